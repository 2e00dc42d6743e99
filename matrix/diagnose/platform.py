"""Platform evidence in a pasted error: where it ran changes which cause the symptoms point at.

A paste rarely says "this is Windows" or "this is a Mac", but its paths do: a library loaded from `C:\\...` is
Windows whatever the last line says, and `/Users/...`, a `.dylib` or "M2 Max" mean a Mac, which has no CUDA GPU.
`adjust` reorders the signatures a paste matched when that evidence turns a generic symptom (a setup failure, the
CPU library, "requires the latest bitsandbytes") into a specific cause (Windows without Windows support, no CUDA
GPU). Specific causes such as a kernel image or an OOM are never overridden.

Stdlib only; never raises on the text it reads.
"""

from __future__ import annotations

import re

from matrix.diagnose.signatures import Signature

# A drive-letter path with backslashes (C:\Users, D:\venv, G:\ChromeD) or Windows-only names. "file:///C:/" links of
# notebooks count too. Matched on the raw paste (before normalising) so the backslashes are still there.
_WINDOWS = re.compile(r"(?<![\w/\\])[A-Za-z]:\\[^\\\s]|file:///[A-Za-z]:/|\bWindowsPath\b|\bAppData\\|\bwin_amd64\b"
                      r"|\bWindows ?1[01]\b", re.IGNORECASE)
# A Linux library name loaded or searched for on that Windows machine, or the setup wording of the releases before
# 0.43 ("despite GPU being available"; 0.43 and later say "despite CUDA"): the release it runs has no Windows support.
_LINUX_LIBRARY_ON_WINDOWS = re.compile(r"libbitsandbytes_\w{1,40}\.so\b|libcudart\.so|libcuda\.so|argument of type "
                                       r"'?WindowsPath'? is not iterable|setup failed despite GPU being available"
                                       r"|\{WindowsPath\(", re.IGNORECASE)
# A Mac: a home directory under /Users (not C:/Users), an app bundle, Mach-O or .dylib libraries, the chip names.
_MAC = re.compile(r"(?<![A-Za-z]:)(?<![\w.])/Users/[^/\s]{1,60}/|/Applications/[^/\s]{1,60}\.app/|mach-o|\.dylib\b"
                  r"|\bmac ?os\b|\bmacbook|\bapple silicon\b|\bM[1-4] ?(max|pro|ultra|chip)\b|\bM[1-4]/M[1-4]\b"
                  r"|\bMPS\b", re.IGNORECASE)

# Generic symptoms that the platform explains better. On Windows: the umbrella setup error, the CPU-library
# fallback and the driver or runtime searches of the Linux-only releases. On a Mac: everything that says bitsandbytes
# found no CUDA library or refused to run, since a Mac has no CUDA GPU at all.
WINDOWS_SYMPTOMS = frozenset({"cuda-setup-failed", "compiled-without-gpu", "libcuda-not-found", "cuda-runtime-missing"})
MAC_SYMPTOMS = frozenset({"cuda-setup-failed", "compiled-without-gpu", "native-library-missing", "bnb-too-old",
                          "accelerate-missing", "libcuda-not-found", "cuda-runtime-missing"})


def platform_of(raw: str) -> str:
    """"windows", "mac" or "" (Linux, or nothing says), from the paths and names in a paste."""
    if not isinstance(raw, str):
        return ""
    if _WINDOWS.search(raw):
        return "windows"
    if _MAC.search(raw):
        return "mac"
    return ""


def adjust(found: list[Signature], raw: str, catalogue: dict[str, Signature]) -> list[Signature]:
    """`found` (most specific first) with the platform's own cause put first where the paste's root cause is only a
    symptom of that platform, or where nothing matched but the paste shows a Linux-only release searching for its
    libraries on Windows (or a bitsandbytes library on a Mac); unchanged otherwise."""
    where = platform_of(raw)
    top = found[0].slug if found else ""
    cause = ""
    if where == "windows" and (top in WINDOWS_SYMPTOMS or not found) and _LINUX_LIBRARY_ON_WINDOWS.search(raw):
        cause = "windows-unsupported"
    elif where == "mac" and (top in MAC_SYMPTOMS or (not found and "libbitsandbytes" in raw)):
        cause = "no-gpu"
    if not cause or cause not in catalogue:
        return found
    return [catalogue[cause]] + [sig for sig in found if sig.slug != cause]
