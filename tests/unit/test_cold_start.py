"""What a cold start loads: structural checks, in fresh interpreters (no timing here; ``make bench`` measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter at the project root; it prints one JSON object."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_verifying_an_rs256_token_never_runs_cryptography_x509() -> None:
    seen = fresh("""
import json, sys, time
import app  # what a Lambda container imports first
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, key, algorithm="RS256")
claims = jwt.decode(token, jwt.PyJWK(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)).key,
                    algorithms=["RS256"])
print(json.dumps({"sub": claims["sub"], "x509_ran": "cryptography.x509.name" in sys.modules}))
""")
    assert seen == {"sub": "alice", "x509_ran": False}


def test_cryptography_x509_loads_whole_on_first_use() -> None:
    seen = fresh("""
import json
import chalicelib.identity
from cryptography import x509
from cryptography.x509.oid import NameOID
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ex")])
parsed = x509.Name.from_rfc4514_string("CN=a,O=b")
print(json.dumps({"rfc4514": name.rfc4514_string(), "parsed": parsed.rfc4514_string()}))
""")
    assert seen == {"rfc4514": "O=ex,CN=broker", "parsed": "CN=a,O=b"}


def test_an_already_imported_x509_is_left_alone() -> None:
    seen = fresh("""
import json, sys
import cryptography.x509
before = sys.modules["cryptography.x509"]
import chalicelib.identity
after = sys.modules["cryptography.x509"]
print(json.dumps({"same": before is after, "loader": type(after.__spec__.loader).__name__}))
""")
    assert seen["same"] is True
    assert seen["loader"] != "LazyLoader"
