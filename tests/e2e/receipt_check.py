#!/usr/bin/python3
"""Independent lskv receipt verifier.

Written from DESIGN.md (section 4, Appendix A) and docs/ledger-format.md
section 6 only; it shares no code with lskv (Debian's python3-cryptography
for X.509 and ECDSA, hashlib for SHA-256, a few lines of protobuf wire
format for the claims).

    receipt_check.py RECEIPT.json --service-cert CERT [--request R --response S]
                     [--anchor ANCHOR.json]

R and S are the binary protobuf PutRequest / PutResponse (or DeleteRange /
Txn with --kind) the client sent and got. With --anchor (a saved signed
root, docs/ledger-format.md section 8) the receipt must carry an RFC 9162
consistency proof between its tree and the anchor's. Exit 0 and "OK ..."
when the receipt verifies, 1 with the reason otherwise.
"""
import argparse
import base64
import hashlib
import json
import struct
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class ReceiptError(Exception):
    pass


def sha256(b):
    return hashlib.sha256(b).digest()


def expected_shape(leaf_index, tree_size):
    """Sides of the siblings on the path of leaf_index in the tree of
    tree_size leaves, leaf to root (True = sibling on the left). The tree is
    RFC 6962's: a node over n > 1 leaves splits at the largest power of two
    below n."""
    if leaf_index >= tree_size:
        raise ReceiptError(f"leaf_index {leaf_index} not below tree_size {tree_size}")
    sides = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if leaf_index < lo + k:
            sides.append(False)
            hi = lo + k
        else:
            sides.append(True)
            lo = lo + k
    return list(reversed(sides))


def unhex32(s, what):
    try:
        b = bytes.fromhex(s)
    except (TypeError, ValueError):
        raise ReceiptError(f"{what} is not hex")
    if len(b) != 32:
        raise ReceiptError(f"{what} is {len(b)} bytes, want 32")
    return b


def get(o, snake, camel):
    return o.get(snake, o.get(camel))


# --- protobuf wire format, just enough for the claims -----------------------

def _varint(b, i):
    v = shift = 0
    while True:
        if i >= len(b):
            raise ReceiptError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def _enc_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def drop_field(msg, field):
    """msg without every occurrence of field number `field`."""
    out = bytearray()
    i = 0
    while i < len(msg):
        start = i
        key, i = _varint(msg, i)
        wt = key & 7
        if wt == 0:
            _, i = _varint(msg, i)
        elif wt == 1:
            i += 8
        elif wt == 2:
            n, i = _varint(msg, i)
            i += n
        elif wt == 5:
            i += 4
        else:
            raise ReceiptError(f"unsupported wire type {wt}")
        if i > len(msg):
            raise ReceiptError("truncated message")
        if key >> 3 != field:
            out += msg[start:i]
    return bytes(out)


KIND_FIELDS = {"put": (1, 4), "delete_range": (2, 5), "txn": (3, 6), "lease_grant": (7, 9),
               "lease_revoke": (8, 10)}


def claims_digest(request, response, kind="put"):
    """SHA-256 of ReceiptClaims{request, response with header (field 1)
    cleared}, serialised in field order."""
    req_field, resp_field = KIND_FIELDS[kind]
    resp = drop_field(response, 1)
    out = bytearray()
    out += _enc_varint(req_field << 3 | 2) + _enc_varint(len(request)) + request
    out += _enc_varint(resp_field << 3 | 2) + _enc_varint(len(resp)) + resp
    return sha256(bytes(out))


# --- verification -------------------------------------------------------------

def node_id_of(cert):
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def check_statement(cert_pem, sig_b64, tree_size, root, named_digest, service_pem):
    """Steps 5-6 for one signed statement (section 4): the node signed
    (tree_size, root, service digest) and the service endorsed the node."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except (AttributeError, ValueError) as e:
        raise ReceiptError(f"node certificate: {e}")
    service = x509.load_pem_x509_certificate(service_pem)
    service_digest = sha256(service.public_bytes(serialization.Encoding.DER))
    if named_digest and unhex32(named_digest, "service_cert_digest") != service_digest:
        raise ReceiptError("signed by another service identity")
    statement = b"lskv-signed-root-v2" + struct.pack(">Q", tree_size) + root + service_digest
    try:
        cert.public_key().verify(base64.b64decode(sig_b64 or ""), statement,
                                 ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ReceiptError("signature does not verify over the signed statement")
    if cert.issuer != service.subject:
        raise ReceiptError("node certificate is not issued by the service certificate")
    try:
        service.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                    ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        raise ReceiptError("node certificate is not signed by the service key")
    return cert


def verify_anchor(anchor, service_pem):
    """An anchor (a saved SignedRoot): returns (tree_size, root bytes)."""
    size = int(get(anchor, "tree_size", "treeSize") or 0)
    root = unhex32(anchor.get("root"), "anchor root")
    if size < 1:
        raise ReceiptError("anchor: no tree_size")
    check_statement(anchor.get("cert"), anchor.get("signature"), size, root,
                    get(anchor, "service_cert_digest", "serviceCertDigest"), service_pem)
    return size, root


def consistent(m, n, root_m, root_n, proof):
    """RFC 9162 section 2.1.4.2: is the tree (m, root_m) a prefix of (n, root_n)?"""
    if m < 1 or m > n:
        return False
    if m == n:
        return not proof and root_m == root_n
    if not proof:
        return False
    path = ([root_m] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(c + fr)
            sr = sha256(c + sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(sr + c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


def verify(receipt, service_pem, expected_claims_digest=None, anchor=None):
    """Verifies a receipt dict (a Receipt or a GetReceiptResponse). Returns
    the signed root (hex); raises ReceiptError."""
    r = receipt.get("receipt", receipt) if isinstance(receipt, dict) else None
    if not isinstance(r, dict):
        raise ReceiptError("not a receipt object")
    tx = get(r, "tx_receipt", "txReceipt")
    if not isinstance(tx, dict):
        raise ReceiptError("no tx_receipt")
    lc = get(tx, "leaf_components", "leafComponents") or {}
    wsd = unhex32(get(lc, "write_set_digest", "writeSetDigest"), "write_set_digest")
    cd = unhex32(get(lc, "claims_digest", "claimsDigest"), "claims_digest")
    ce = get(lc, "commit_evidence", "commitEvidence")
    if not isinstance(ce, str):
        raise ReceiptError("no commit_evidence")
    # 1. the leaf
    h = sha256(wsd + sha256(ce.encode()) + cd)
    # 2-3. proof elements and their pattern
    proof = tx.get("proof") or []
    leaf_index = int(get(tx, "leaf_index", "leafIndex") or 0)
    tree_size = int(get(tx, "tree_size", "treeSize") or 0)
    sides = expected_shape(leaf_index, tree_size)
    if len(proof) != len(sides):
        raise ReceiptError(f"proof has {len(proof)} elements, leaf {leaf_index} of "
                           f"{tree_size} needs {len(sides)}")
    # 4. fold
    for n, (e, want_left) in enumerate(zip(proof, sides)):
        left, right = e.get("left") or "", e.get("right") or ""
        if bool(left) == bool(right):
            raise ReceiptError(f"proof element {n} must have exactly one of left/right")
        if bool(left) != want_left:
            raise ReceiptError(f"proof element {n} is on the wrong side for leaf "
                               f"{leaf_index} of {tree_size}")
        if left:
            h = sha256(unhex32(left, f"proof {n}") + h)
        else:
            h = sha256(h + unhex32(right, f"proof {n}"))
    # 5-6. the signed statement (tree_size, root, service) and the endorsement
    cert = check_statement(r.get("cert"), r.get("signature"), tree_size, h,
                           get(r, "service_cert_digest", "serviceCertDigest"), service_pem)
    node_id = get(r, "node_id", "nodeId")
    if node_id and node_id != node_id_of(cert):
        raise ReceiptError("node_id does not match the certificate")
    # 7. the claims
    if expected_claims_digest is not None and expected_claims_digest != cd:
        raise ReceiptError("claims digest does not match the request and response")
    # 8. with an anchor: one history (section 8)
    if anchor is not None:
        a_size, a_root = verify_anchor(anchor, service_pem)
        if int(get(r, "anchor_size", "anchorSize") or 0) != a_size:
            raise ReceiptError("receipt carries no consistency proof to the anchor")
        proof = [unhex32(x, "anchor_proof") for x in get(r, "anchor_proof", "anchorProof") or []]
        ok = (consistent(a_size, tree_size, a_root, h, proof) if a_size <= tree_size
              else consistent(tree_size, a_size, h, a_root, proof))
        if not ok:
            raise ReceiptError("the receipt's tree and the anchor's are not one history "
                               "(rolled back or forked)")
    return h.hex()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("receipt")
    ap.add_argument("--service-cert", required=True)
    ap.add_argument("--request")
    ap.add_argument("--response")
    ap.add_argument("--kind", default="put", choices=sorted(KIND_FIELDS))
    ap.add_argument("--anchor")
    a = ap.parse_args(argv)
    try:
        with open(a.receipt) as f:
            receipt = json.load(f)
        with open(a.service_cert, "rb") as f:
            service_pem = f.read()
        expected = None
        if a.request or a.response:
            with open(a.request, "rb") as f:
                req = f.read()
            with open(a.response, "rb") as f:
                resp = f.read()
            expected = claims_digest(req, resp, a.kind)
        anchor = None
        if a.anchor:
            with open(a.anchor) as f:
                anchor = json.load(f)
        root = verify(receipt, service_pem, expected, anchor)
    except (ReceiptError, ValueError, OSError) as e:
        print(f"receipt_check: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"OK: root {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
