#!/usr/bin/env python3
"""Print the SEV-SNP launch digest of every launch shape in an image's
manifest, computed by the Python `sev-snp-measure` package (our independent
cross-check), one JSON object per line.

usage: sev_snp_measure_table.py IMAGE_DIR
"""
import json
import sys
import time

from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType


def main() -> None:
    image = sys.argv[1]
    with open(f"{image}/manifest.json") as f:
        manifest = json.load(f)
    with open(f"{image}/cmdline") as f:
        cmdline = f.read()
    for row in manifest["measurements"]:
        start = time.perf_counter()
        digest = guest.calc_launch_digest(
            SevMode.SEV_SNP,
            row["vcpus"],
            vcpu_types.CPU_SIGS[row["cpu_type"]],
            f"{image}/OVMF.fd",
            f"{image}/vmlinuz",
            f"{image}/initrd.img",
            cmdline,
            int(row["guest_features"], 16),
            vmm_type=VMMType.QEMU,
        )
        print(json.dumps({
            "vcpus": row["vcpus"],
            "cpu_type": row["cpu_type"],
            "guest_features": row["guest_features"],
            "measurement": digest.hex(),
            "seconds": time.perf_counter() - start,
        }), flush=True)


if __name__ == "__main__":
    main()
