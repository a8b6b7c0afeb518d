"""Checks a cocoon release's provenance with the in-toto attestation
bindings (PyPI `in-toto-attestation`), independently of our Rust code.

Usage: check_provenance.py BUNDLE_DIR

The statement must parse as an in-toto v1 Statement and validate, its
predicate must parse as SLSA provenance v1 (the protobuf parser refuses
unknown fields), every resolved dependency must carry a digest, every
input a profile's manifest names (each .deb and each PyPI wheel) must be a
resolved dependency with the same sha256, and its subjects must be exactly
the bundle's artifacts with their sha256.
"""

import hashlib
import json
import os
import sys

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

NOT_SUBJECTS = {"SHA256SUMS", "SHA256SUMS.minisig", "provenance.intoto.json"}


def main(bundle: str) -> None:
    with open(os.path.join(bundle, "provenance.intoto.json")) as f:
        doc = json.load(f)
    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    if pb.predicate_type != "https://slsa.dev/provenance/v1":
        sys.exit(f"predicateType is {pb.predicate_type!r}")
    prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    deps = prov.build_definition.resolved_dependencies
    if not deps or any(len(d.digest) == 0 for d in deps):
        sys.exit("a resolved dependency has no digest")
    if not prov.run_details.builder.id:
        sys.exit("no builder id")

    resolved = {(d.name, d.digest.get("sha256")) for d in deps}
    for entry in sorted(os.listdir(bundle)):
        path = os.path.join(bundle, entry, "manifest.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            manifest = json.load(f)
        pinned = [(p["package"] + ".deb", p["sha256"]) for p in manifest["inputs"]]
        pinned += [(w["file"], w["sha256"]) for w in manifest.get("wheels", [])]
        for dep in pinned:
            if dep not in resolved:
                sys.exit(f"{entry}'s input {dep[0]} (sha256 {dep[1]}) is not a resolved dependency")

    files = {}
    for root, _, names in os.walk(bundle):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), bundle)
            if rel not in NOT_SUBJECTS:
                with open(os.path.join(root, name), "rb") as f:
                    files[rel] = hashlib.sha256(f.read()).hexdigest()
    subjects = {s.name: s.digest["sha256"] for s in pb.subject}
    if subjects != files:
        sys.exit(f"subjects {sorted(subjects)} are not the bundle's files {sorted(files)}")
    print(f"provenance ok: {len(subjects)} subjects, {len(deps)} resolved dependencies")


if __name__ == "__main__":
    main(sys.argv[1])
