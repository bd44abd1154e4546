"""What a cold start loads: structural checks, in fresh interpreters (no timing here; ``make bench`` measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_collector_is_paused_only_inside_and_restored_even_on_errors() -> None:
    import gc

    from chalicelib.gcpause import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # someone else's pause is theirs to end
    finally:
        gc.enable()


def test_a_container_builds_its_services_and_policy_with_the_collector_paused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import app as app_module
    from chalicelib.access import policy as policy_module

    seen: dict[str, bool] = {}

    def build(environ: object) -> object:
        seen["services"] = gc.isenabled()
        return object()

    def parse(text: str, source: str) -> object:
        seen["policy"] = gc.isenabled()
        return object()

    monkeypatch.setattr(app_module, "_services", None)
    monkeypatch.setattr(app_module, "_build_services", build)
    monkeypatch.setattr(policy_module, "_parse_policy", parse)
    app_module.services()
    policy_module.parse_policy("version: 1", "p.yaml")
    assert seen == {"services": False, "policy": False}
    assert gc.isenabled()


def test_two_threads_pausing_the_collector_never_leave_it_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pause that ends while another thread is entering its own leaves the collector on.

    The interleaving is forced: the second thread reads the flag (off: the first
    pause holds it), the first pause then ends, and only then does the second
    thread switch the collector off. Unlocked, nobody ever turns it on again
    (a reload thread's parse_policy beside a container building its services).
    """
    import gc
    import threading

    from chalicelib import gcpause

    second_read, first_done = threading.Event(), threading.Event()
    real_isenabled = gc.isenabled

    def isenabled() -> bool:
        answer = real_isenabled()
        if threading.current_thread().name == "second":
            second_read.set()
            first_done.wait(5)
        return answer

    monkeypatch.setattr(gcpause.gc, "isenabled", isenabled)

    def second() -> None:
        with gcpause.gc_paused():
            second_read.set()  # a pause that never reads the flag here has already counted itself in

    thread = threading.Thread(target=second, name="second")
    try:
        with gcpause.gc_paused():
            thread.start()
            second_read.wait(5)
        first_done.set()
        thread.join(5)
        monkeypatch.undo()
        assert gc.isenabled(), "both pauses ended but the cyclic collector is still off"
    finally:
        first_done.set()
        gc.enable()


# gh-114763: LazyLoader switched the module's class before running its code, so another
# thread saw a half-run module. Fixed in 3.12.3 (GH-115870) and, per its backport, 3.11.9.
_LAZYLOADER_RACES = sys.version_info < (3, 11, 9) or (3, 12) <= sys.version_info < (3, 12, 3)


@pytest.mark.xfail(_LAZYLOADER_RACES, strict=True,
                   reason="review10: this Python's LazyLoader is not thread-safe (CPython gh-114763)")
def test_two_threads_first_using_the_deferred_x509_both_see_it_whole() -> None:
    """PyJWT's HMAC key check is x509's one user: a second thread arriving while the first runs x509's
    code must wait for it, not find ``load_der_x509_certificate`` missing (an AttributeError, a 500)."""
    seen = fresh("""
import hashlib, json, sys, threading
import chalicelib.identity  # defers cryptography.x509, as a container does
from jwt.algorithms import HMACAlgorithm

inside, second_done = threading.Event(), threading.Event()
def hook(event, args):
    # The first user is inside x509's own code: let the second one in now.
    if event == "import" and args[0] == "cryptography.x509.base" and threading.current_thread().name == "first":
        inside.set()
        second_done.wait(2)  # a thread-safe loader holds the second user until the first is done
sys.addaudithook(hook)
errors = []
def use():
    try:
        HMACAlgorithm(hashlib.sha256).prepare_key(b"k" * 32)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
def second():
    inside.wait(5)
    use()
    second_done.set()
threads = [threading.Thread(target=use, name="first"), threading.Thread(target=second, name="second")]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"errors": errors}))
""")
    assert seen == {"errors": []}


def test_the_broker_itself_never_reads_cryptography_x509() -> None:
    """The deferred module's first reader would race on old Pythons' LazyLoader (see chalicelib/identity):
    code that needs X.509 (mTLS, x5c chains) must revisit that choice, not stumble into it."""
    sources = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    readers = [str(path.relative_to(ROOT)) for path in sources
               if "x509" in path.read_text() and path != ROOT / "chalicelib" / "identity" / "__init__.py"]
    assert readers == []
