"""A virus scanner for the scan hook's tests, keeping clamscan's convention (the file on
stdin; exit 0 clean, 1 infected with "stdin: <name> FOUND", 2 error). It knows one virus:
the EICAR test file, the anti-virus industry's harmless test string (eicar.org), which ClamAV
reports as Eicar-Test-Signature. ClamAV itself cannot run here: its signature database is
downloaded from its mirrors, which this machine cannot reach."""

import sys

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def main() -> int:
    """Scan stdin; ``--fail`` plays a scanner that errs."""
    data = sys.stdin.buffer.read()
    if "--fail" in sys.argv[1:]:
        return 2
    if EICAR in data:
        print("stdin: Eicar-Test-Signature FOUND")
        return 1
    print("stdin: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
