#!/usr/bin/env python3
"""Makes the test RIMs in this folder: a driver RIM and a VBIOS RIM in the
layout NVIDIA's RIMs have (SWID tags, a Resource per measurement, Hash0..
attributes in the SHA-384 namespace), signed the way NVIDIA signs them
(enveloped XMLDSig, Canonical XML 1.1, ECDSA P-384 / SHA-384, the chain in
KeyInfo) by the stock `xmlsec1`, with a test PKI made by `openssl`: a root,
an intermediate and a signer, all P-384. Their digests are the measurement
blocks of the real H100 report in ../nvidia/, so the
reference values they give must pass on that report.

    python3 measurements/tests/data/rim/make.py

Writes root.pem, driver.swidtag and vbios.swidtag beside itself (the keys
stay in a temporary folder and are thrown away). Needs openssl, xmlsec1.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CLAIMS = os.path.join(HERE, "../nvidia/hopperAttestationReport-claims.txt")
ZERO = "00" * 48
# SPDM block indices (1-based) each RIM makes active; the rest inactive.
VBIOS_ACTIVE = range(2, 13)
DRIVER_ACTIVE = range(22, 42)
# Blocks that get a second accepted value: the real one as Hash1 here.
SECOND = {3: "first", 23: "first", 30: "second"}


def run(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def pki(d):
    """root.pem, inter.pem, leaf.pem, leaf.key in d."""
    def key(name):
        run("openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", f"{name}.key", cwd=d)

    for n in ("root", "inter", "leaf"):
        key(n)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                "[inter]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                "[leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run("openssl", "req", "-new", "-x509", "-sha384", "-key", "root.key", "-days", "7300",
        "-subj", "/C=US/O=cocoon tests/CN=cocoon test RIM root", "-extensions", "ca",
        "-config", "ext.cnf", "-out", "root.pem", cwd=d)
    for name, issuer, ext, days in (("inter", "root", "inter", 7300), ("leaf", "inter", "leaf", 3650)):
        run("openssl", "req", "-new", "-sha384", "-key", f"{name}.key",
            "-subj", f"/C=US/O=cocoon tests/CN=cocoon test RIM {name}", "-out", f"{name}.csr", cwd=d)
        run("openssl", "x509", "-req", "-sha384", "-in", f"{name}.csr", "-CA", f"{issuer}.pem",
            "-CAkey", f"{issuer}.key", "-CAcreateserial", "-days", str(days),
            "-extfile", "ext.cnf", "-extensions", ext, "-out", f"{name}.pem", cwd=d)


def template(kind, version, active, measured):
    resources = []
    for i in range(64):
        spdm = i + 1
        on = spdm in active
        value = measured.get(str(spdm), ZERO) if on else ZERO
        hashes = [value]
        if on and spdm in SECOND:
            other = "ab" * 48
            hashes = [other, value] if SECOND[spdm] == "second" else [value, other]
        attrs = " ".join(f'ns2:Hash{k}="{h}"' for k, h in enumerate(hashes))
        resources.append(
            f'        <ns0:Resource type="Measurement" index="{i}" active="{on}" '
            f'alternatives="{len(hashes)}" {attrs} name="Measurement_{i}" size="48"/>')
    body = "\n".join(resources)
    return f'''<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns0="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns2="http://www.w3.org/2001/04/xmlenc#sha384" corpus="false" name="GH100" patch="false" supplemental="false" tagId="cocoon-test-{kind}-{version}" version="1.0" tagVersion="0">
    <ns0:Entity name="cocoon tests" role="softwareCreator tagCreator"/>
    <ns0:Meta xmlns:ns1="https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/" colloquialVersion="{version}" edition="GPU" product="GH100" revision="r1" PayloadType="direct" ns1:BindingSpec="RIMIM" ns1:BindingSpecVersion="1.01"/>
    <ns0:Payload xmlns:SHA384="http://www.w3.org/2001/04/xmlenc#sha384">
{body}
    </ns0:Payload>
<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"/><ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature></SoftwareIdentity>
'''


def main():
    with open(CLAIMS) as f:
        claims = json.load(f)
    measured = claims["measurements"]
    cfg = claims["config"]
    with tempfile.TemporaryDirectory() as d:
        pki(d)
        for kind, version, active in (
            ("driver", cfg["driver_version"], DRIVER_ACTIVE),
            ("vbios", cfg["vbios_version"].upper(), VBIOS_ACTIVE),
        ):
            t = os.path.join(d, f"{kind}.xml")
            with open(t, "w") as f:
                f.write(template(kind, version, active, measured))
            run("xmlsec1", "--sign", "--privkey-pem", "leaf.key,leaf.pem,inter.pem",
                "--output", os.path.join(HERE, f"{kind}.swidtag"), t, cwd=d)
        with open(os.path.join(d, "root.pem")) as src, open(os.path.join(HERE, "root.pem"), "w") as dst:
            dst.write(src.read())
    print("wrote root.pem, driver.swidtag, vbios.swidtag", file=sys.stderr)


if __name__ == "__main__":
    main()
