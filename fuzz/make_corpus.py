#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ (committed; run again
only to change the seeds). The first byte of a seed picks the target's mode (see
src/fuzz_entry.rs). Tokens are signed with the fuzz policy's fixed key `k1` (FUZZ_KEY_PKCS8),
so valid ones pass verification at the fuzz clock (NOW). Needs python3-cryptography."""

import base64
import json
import os
import re
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENTRY = open(os.path.join(ROOT, "src", "fuzz_entry.rs")).read()
PKCS8 = re.search(r'FUZZ_KEY_PKCS8: &str = "([^"]+)"', ENTRY).group(1)
NOW = 1_700_000_000
KEY = serialization.load_der_private_key(base64.b64decode(PKCS8), None)
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDsOb3m/R48Bq2/oIx/1CBcRT0sTKVR3V2LyRDJAERnZ user"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def sign(header, claims, key=KEY):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    c = claims if isinstance(claims, bytes) else json.dumps(claims, separators=(",", ":")).encode()
    signing_input = b64u(h) + b"." + b64u(c)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input + b"." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


HEADER = {"alg": "ES256", "kid": "k1", "typ": "JWT"}
CLAIMS = {
    "iss": "https://issuer.example",
    "aud": "ssh-edge",
    "sub": "alice",
    "jti": "j-1",
    "host": "training-job-abc1234-0.ssh.baseten.co",
    "iat": NOW - 10,
    "exp": NOW + 300,
}


def claims(**over):
    c = dict(CLAIMS)
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def seeds_jwt():
    other = ec.generate_private_key(ec.SECP256R1())
    tokens = {
        "valid": sign(HEADER, CLAIMS),
        "valid_aud_list_nbf": sign(HEADER, claims(aud=["x", "ssh-edge"], nbf=NOW - 5)),
        "expired": sign(HEADER, claims(exp=NOW - 3600, iat=NOW - 4000)),
        "wrong_aud": sign(HEADER, claims(aud="other")),
        "lifetime_too_long": sign(HEADER, claims(exp=NOW + 90000)),
        "float_time": sign(HEADER, b'{"iss":"https://issuer.example","aud":"ssh-edge","sub":"a","jti":"j","host":"h","iat":1.5e9,"exp":1700000300}'),
        "dup_claim": sign(HEADER, b'{"iss":"a","iss":"https://issuer.example","aud":"ssh-edge","sub":"a","jti":"j","host":"h","iat":1699999990,"exp":1700000300}'),
        "other_key": sign(HEADER, CLAIMS, other),
        "kid_k2": sign(dict(HEADER, kid="k2"), CLAIMS),
        "alg_none": b64u(b'{"alg":"none","kid":"k1"}') + b"." + b64u(json.dumps(CLAIMS).encode()) + b".",
        "jku": sign(dict(HEADER, jku="https://x"), CLAIMS),
        "crit": sign(dict(HEADER, crit=["exp"]), CLAIMS),
        "two_parts": b"eyJhbGciOiJFUzI1NiJ9.e30",
        "padded": sign(HEADER, CLAIMS).replace(b".", b"=.", 1),
        "not_ascii": "eyJ\u00e9.x.y".encode(),
    }
    out = {}
    for name, tok in tokens.items():
        out["tok_" + name] = b"\x00" + tok
    for name, (h, c) in {
        "valid": (HEADER, CLAIMS),
        "host_model_remote": (HEADER, claims(host="model-m1-d1-2.acme.ssh.baseten.co")),
        "missing_jti": (HEADER, claims(jti=None)),
        "null_sub": (HEADER, claims(sub=None) | {"sub": None}),
        "negative_iat": (HEADER, claims(iat=-1)),
        "big_exp": (HEADER, b'{"iss":"https://issuer.example","aud":"ssh-edge","sub":"a","jti":"j","host":"h","iat":1699999990,"exp":18446744073709551615}'),
        "aud_object": (HEADER, claims(aud={"a": 1})),
        "typ_jose": (dict(HEADER, typ="JOSE"), CLAIMS),
        "not_object": (HEADER, b"[1,2,3]"),
    }.items():
        hj = h if isinstance(h, bytes) else json.dumps(h, separators=(",", ":")).encode()
        cj = c if isinstance(c, bytes) else json.dumps(c, indent=1).encode()
        out["signed_" + name] = b"\x01" + hj + b"\n" + cj
    return out


def seeds_preamble():
    tok = sign(HEADER, CLAIMS)
    frame = lambda t: struct.pack(">I", len(t)) + t  # noqa: E731
    return {
        "valid": frame(tok),
        "valid_then_ssh": frame(tok) + b"SSH-2.0-OpenSSH_9.2\r\n",
        "expired": frame(sign(HEADER, claims(exp=NOW - 3600, iat=NOW - 4000))),
        "zero_len": b"\x00\x00\x00\x00",
        "too_long": b"\x00\x00\x40\x01" + b"a" * 16,
        "truncated_prefix": b"\x00\x00",
        "truncated_token": struct.pack(">I", 500) + tok[:100],
        "garbage": frame(b"hello"),
    }


def pem(der):
    b = base64.b64encode(der).decode()
    lines = [b[i : i + 64] for i in range(0, len(b), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def seeds_key():
    spki = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    compressed = KEY.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    comp_spki = spki[:26 - 3] + bytes([0x03, len(compressed) + 1, 0x00]) + compressed
    comp_spki = bytes([0x30, len(comp_spki) - 2]) + comp_spki[2:]
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    # X9.62 hybrid form of the same point (0x06 | Y's parity): aws-lc-rs takes it, we must not.
    hybrid = spki[:26] + bytes([0x06 | (spki[-1] & 1)]) + spki[27:]
    return {
        "pem_valid": b"\x00" + pem(spki).encode(),
        "pem_crlf_indented": b"\x00  " + pem(spki).replace("\n", "\r\n").encode(),
        "pem_two_blocks": b"\x00" + (pem(spki) + pem(spki)).encode(),
        "pem_header": b"\x00" + pem(spki).replace("KEY-----\n", "KEY-----\nProc-Type: 4\n\n", 1).encode(),
        "pem_p384": b"\x00" + pem(p384).encode(),
        "pem_bad_base64": b"\x00-----BEGIN PUBLIC KEY-----\nMFkw!!\n-----END PUBLIC KEY-----\n",
        "der_valid": b"\x01" + spki,
        "der_trailing": b"\x01" + spki + b"\x00",
        "der_off_curve": b"\x01" + off_curve,
        "der_compressed": b"\x01" + comp_spki,
        "der_hybrid": b"\x01" + hybrid,
        "der_long_form_len": b"\x01" + b"\x30\x81\x59" + spki[2:],
        "der_truncated": b"\x01" + spki[:40],
        "der_p384": b"\x01" + p384,
    }


MINIMAL_CONFIG = """
[listen]
ssh = "127.0.0.1:2222"

[remotes.default]
trusted_user_cas = ["SHA256:jaa9rK0yHLxhR6C9rWMVHT3z52Fbcs0wnpki5lZEcyE"]

[[routes]]
kind = "training-job"
backend = "{job_id}-{node}.training.svc:2222"
login_user = "root"
principal = "{job_id}"
"""


def seeds_config():
    example = open(os.path.join(ROOT, "config", "example.toml")).read()
    example = "\n".join(l for l in example.splitlines() if l.strip() and not l.lstrip().startswith("#"))
    spki = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with_token = MINIMAL_CONFIG + '\n[[remotes.default.token_keys]]\nkid = "k1"\npublic_key = """\n' + pem(spki) + '"""\n'
    return {
        "example": b"\x00" + example.encode(),
        "minimal": b"\x00" + MINIMAL_CONFIG.encode(),
        "with_token_key": b"\x00" + with_token.encode(),
        "empty": b"\x00",
        "unknown_fields": b"\x00[listen]\nssh = \"127.0.0.1:22\"\nsssh = 1\n[bogus]\nx = 2\n",
        "wrong_types": b"\x00[ssh]\nwindow_size = \"big\"\n[limits]\nper_source_rate = -1.0\nipv4_prefix = 99\n",
        "bad_template": b"\x00[[hosts.kinds]]\nname = \"x\"\ntemplate = \"x-{a:nope}[-{b}\"\n",
        "proxy_cidrs": b"\x00[listen]\nssh = \"[::]:22\"\nproxy_protocol = \"v2\"\nproxy_trusted_cidrs = [\"10.0.0.0/8\", \"::1\", \"300.1.1.1/40\"]\n",
        "bad_toml": b"\x00[listen\nssh = ",
        "known_hosts": b"\x01@cert-authority *.svc.cluster.local " + SSH_KEY.encode() + b"\n@revoked * " + SSH_KEY.encode() + b"\n# comment\nhost1 " + SSH_KEY.encode() + b"\n",
        "known_hosts_bad": b"\x01@cert-authority\n@revoked * ssh-ed25519 AAAA\n@weird x y\n",
    }


def seeds_issuer():
    return {
        "search": b'\x00{"job_id": "abc1234"}',
        "search_number": b'\x00{"job_id": 5}',
        "search_extra": b'\x00{"job_id": "ABC", "x": [1, {"y": null}]}',
        "search_bad": b"\x00{\"job_id\": ",
        "sign_training": b'\x01{"public_key": "' + SSH_KEY.encode() + b'", "replica_id": "0"}',
        "sign_training_number": b'\x01{"public_key": "' + SSH_KEY.encode() + b'", "replica_id": 12}',
        "sign_training_missing_replica": b'\x01{"public_key": "' + SSH_KEY.encode() + b'"}',
        "sign_training_big_replica": b'\x01{"public_key": "' + SSH_KEY.encode() + b'", "replica_id": 18446744073709551615}',
        "sign_model": b'\x02{"public_key": "' + SSH_KEY.encode() + b'"}',
        "sign_model_replica": b'\x02{"public_key": "' + SSH_KEY.encode() + b'", "replica_id": "3"}',
        "sign_bad_key": b'\x02{"public_key": "ssh-rsa AAAAB3 x"}',
        "route_sign": b"\x03POST /v1/training_projects/p1/jobs/abc1234/ssh/sign\n" + b'{"public_key": "' + SSH_KEY.encode() + b'", "replica_id": "1"}',
        "route_model": b"\x03POST /v1/models/m1/deployments/d1/ssh/sign\n" + b'{"public_key": "' + SSH_KEY.encode() + b'"}',
        "route_search": b'\x03POST /v1/training_jobs/search\n{"job_id": "abc1234"}',
        "route_get": b"\x03GET /v1/training_jobs/search\n",
        "route_bad_id": b"\x03POST /v1/training_projects/P_1/jobs/x/ssh/sign\n{}",
    }


def v2(command, family, addr, tlvs=b""):
    body = addr + tlvs
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


def seeds_proxy():
    ip4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 51000, 22)
    ip6 = bytes(range(16)) + bytes(range(16, 32)) + struct.pack(">HH", 51000, 22)
    tlv = b"\x01\x00\x02h2" + b"\x04\x00\x00"
    return {
        "v1_tcp4": b"\x00PROXY TCP4 192.0.2.1 198.51.100.2 51000 22\r\nSSH-2.0-x\r\n",
        "v1_tcp6": b"\x00PROXY TCP6 2001:db8::1 2001:db8::2 51000 22\r\n",
        "v1_unknown": b"\x00PROXY UNKNOWN\r\n",
        "v1_only_bad": b"\x01PROXY TCP4 192.0.2.300 198.51.100.2 51000 22\r\n",
        "v1_no_crlf": b"\x01PROXY TCP4 192.0.2.1 198.51.100.2 51000 22" + b" " * 80,
        "v1_in_v2_mode": b"\x02PROXY TCP4 192.0.2.1 198.51.100.2 51000 22\r\n",
        "v2_tcp4": b"\x00" + v2(1, 0x11, ip4) + b"SSH-2.0-x\r\n",
        "v2_tcp6_tlv": b"\x02" + v2(1, 0x21, ip6, tlv),
        "v2_local": b"\x02" + v2(0, 0x00, b""),
        "v2_unix": b"\x00" + v2(1, 0x31, b"/tmp/a".ljust(108, b"\x00") * 2),
        "v2_truncated": b"\x00" + v2(1, 0x11, ip4)[:20],
        "v2_long_len": b"\x00" + b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + ip4,
        "v2_in_v1_mode": b"\x01" + v2(1, 0x11, ip4),
        "off_mode": b"\x03SSH-2.0-OpenSSH_9.2\r\n",
        "plain_ssh": b"\x00SSH-2.0-OpenSSH_9.2\r\n",
    }


def seeds_hostname():
    return {
        "host_training": b"\x00training-job-abc1234-0.ssh.baseten.co",
        "host_model_remote": b"\x00model-m1-d1-3.acme.ssh.baseten.co",
        "host_upper_dot": b"\x00TRAINING-JOB-ABC1234-0.SSH.BASETEN.CO.",
        "host_big_node": b"\x00training-job-abc1234-99999999999999999999.ssh.baseten.co",
        "host_unknown_remote": b"\x00model-x-y.nowhere.ssh.baseten.co",
        "host_empty_label": b"\x00training-job-a-0..ssh.baseten.co",
        "host_long_label": b"\x00" + b"a" * 64 + b".ssh.baseten.co",
        "host_unicode": "\x00tr\u0430ining-job-abc1234-0.ssh.baseten.co".encode(),
        "host_wrong_suffix": b"\x00training-job-abc1234-0.example.com",
        "user_short": b"\x01training-job-abc1234-0",
        "user_remote": b"\x01model-m1-d1.eu-west",
        "user_full": b"\x01model-m1-d1-7.ssh.baseten.co",
        "user_root": b"\x01root",
        "template_training": b"\x02training-job-{job_id:slug}-{node:num}\ntraining-job-abc1234-0.ssh.example.com",
        "template_optional": b"\x02model-{model_id}-{deployment_id}[-{replica_id}]\nmodel-a-b-1.acme.ssh.example.com",
        "template_adjacent": b"\x02x-{a}{b}\nx-ab.ssh.example.com",
        "template_unclosed": b"\x02x-{a\nx-a.ssh.example.com",
        "template_bad_class": b"\x02x-{a:hex}-[{b}]\nx-1.ssh.example.com",
    }


def main():
    for target, seeds in {
        "hostname": seeds_hostname(),
        "token_preamble": seeds_preamble(),
        "jwt": seeds_jwt(),
        "token_key": seeds_key(),
        "config": seeds_config(),
        "issuer_json": seeds_issuer(),
        "proxy": seeds_proxy(),
    }.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
