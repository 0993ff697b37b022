#!/usr/bin/env python3
"""A minimal Caucus protocol version 1 client in Python, written from
docs/protocol.md alone, to show that the document is enough to interoperate
with the reference relay and the reference Rust client.

Usage:
    caucus_interop.py [options] RELAY_URL INVITE_LINK TEXT
    caucus_interop.py --self-test [--hpke-vectors FILE]

RELAY_URL, INVITE_LINK and TEXT may instead come from the environment
variables CAUCUS_RELAY, CAUCUS_LINK and CAUCUS_TEXT. RELAY_URL may be "-" to
use the relay URL inside the invite link (11.1).

As a party member it: joins the session from the link (11.6); waits for a
roster that names it; subscribes from roster 0; accepts every roster against
the mediator pinned by the link (7.5, 7.6); opens its key bundles (8.5); posts
one Text with the given sharing in its own party's private room (10.3); then
waits until it has verified (a) a Text from the lead mediator in that private
room and (b) a Forward from the lead mediator. Every verified content event is
printed on stdout as one JSON line, for example
    {"event": "message", "text": "...", ...}
    {"event": "forward", "mode": "Reframed", "text": "...", ...}
and its own post as {"event": "sent", ...}. With --document FILE it then adds
FILE as a document in that room (9.6: encrypted, uploaded in chunks, named by
a Document content) and waits instead for a Document from the lead mediator
there, which it downloads, opens and checks ({"event": "document_opened",
...}). Exit status 0 once both were seen; 1 on a verification failure, a refusal by
the relay, a decline or a timeout (--timeout, default 30 s), with the reason
on stderr; 2 on bad usage.

Dependencies: `websockets` and `cryptography` only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import struct
import sys
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


# ---------------------------------------------------------------------------
# Errors (section 14)
# ---------------------------------------------------------------------------


class ProtocolError(Exception):
    """A failed check; `code` is the protocol error code of section 14."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def fail(code: str, detail: str = ""):
    raise ProtocolError(code, detail)


MAX_JSON_INTEGER = 2**53 - 1  # 12.1


def json_integers_ok(value) -> bool:
    """Every number in a frame is an integer from 0 to 2^53 - 1 (12.1)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return 0 <= value <= MAX_JSON_INTEGER
    if isinstance(value, float):
        return False
    if isinstance(value, list):
        return all(json_integers_ok(v) for v in value)
    if isinstance(value, dict):
        return all(json_integers_ok(v) for v in value.values())
    return False


# ---------------------------------------------------------------------------
# Unpadded base64url (1.6)
# ---------------------------------------------------------------------------

_B64_ALPHABET = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, size: Optional[int] = None) -> bytes:
    """Strict decoder: no padding, only the url-safe alphabet, zero trailing
    bits, and (for fixed-size values) exactly `size` bytes."""
    if not isinstance(text, str):
        fail("malformed", "expected a base64url string")
    raw = text.encode("ascii", "replace")
    if any(c not in _B64_ALPHABET for c in raw) or len(raw) % 4 == 1:
        fail("malformed", "not unpadded base64url")
    out = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if b64e(out) != text:  # non-zero trailing bits
        fail("malformed", "non-canonical base64url (trailing bits)")
    if size is not None and len(out) != size:
        fail("malformed", f"expected {size} bytes, got {len(out)}")
    return out


# ---------------------------------------------------------------------------
# Canonical encoding (section 4)
# ---------------------------------------------------------------------------


class Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, x: int) -> "Writer":
        self.buf += struct.pack(">B", x)
        return self

    def u16(self, x: int) -> "Writer":
        self.buf += struct.pack(">H", x)
        return self

    def u32(self, x: int) -> "Writer":
        self.buf += struct.pack(">I", x)
        return self

    def u64(self, x: int) -> "Writer":
        self.buf += struct.pack(">Q", x)
        return self

    def boolean(self, x: bool) -> "Writer":
        return self.u8(1 if x else 0)

    def fixed(self, b: bytes) -> "Writer":
        self.buf += b
        return self

    def bytes(self, b: bytes) -> "Writer":
        return self.u32(len(b)).fixed(b)

    def string(self, s: str) -> "Writer":
        return self.bytes(s.encode("utf-8"))

    def list(self, items, write_item: Callable[["Writer", object], None]) -> "Writer":
        self.u32(len(items))
        for item in items:
            write_item(self, item)
        return self

    def option(self, value, write_value: Callable[["Writer", object], None]) -> "Writer":
        if value is None:
            return self.u8(0)
        self.u8(1)
        write_value(self, value)
        return self

    def done(self) -> bytes:
        return bytes(self.buf)


class Reader:
    """Strict canonical decoder (4.1). Errors are `malformed`."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fixed(self, n: int) -> bytes:
        if self.remaining() < n:
            fail("malformed", "truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.fixed(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.fixed(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.fixed(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.fixed(8))[0]

    def boolean(self) -> bool:
        b = self.u8()
        if b > 1:
            fail("malformed", "invalid boolean byte")
        return b == 1

    def tag(self, allowed) -> int:
        t = self.u8()
        if t not in allowed:
            fail("malformed", f"invalid tag {t}")
        return t

    def bytes(self) -> bytes:
        return self.fixed(self.u32())

    def string(self) -> str:
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError:
            fail("malformed", "invalid UTF-8")

    def list(self, read_item: Callable[["Reader"], object]) -> list:
        count = self.u32()
        if count > self.remaining():  # every item takes at least one byte
            fail("malformed", "truncated list")
        return [read_item(self) for _ in range(count)]

    def option(self, read_value: Callable[["Reader"], object]):
        t = self.u8()
        if t == 0:
            return None
        if t == 1:
            return read_value(self)
        fail("malformed", "invalid option tag")

    def end(self) -> None:
        if self.remaining():
            fail("malformed", "trailing bytes")


def decode_exact(data: bytes, read: Callable[[Reader], object]):
    r = Reader(data)
    value = read(r)
    r.end()
    return value


# ---------------------------------------------------------------------------
# Labelled primitives (sections 2.3 and 3)
# ---------------------------------------------------------------------------

L_IDENTITY = b"caucus/v1/identity"
L_FINGERPRINT = b"caucus/v1/fingerprint"
L_ROSTER = b"caucus/v1/roster"
L_ROSTER_HASH = b"caucus/v1/roster-hash"
L_LABEL_KEY = b"caucus/v1/roster-label-key"
L_KEY_BUNDLE = b"caucus/v1/key-bundle"
L_ROOM_KEY = b"caucus/v1/room-key"
L_ENVELOPE = b"caucus/v1/envelope"
L_ENVELOPE_HASH = b"caucus/v1/envelope-hash"
L_MESSAGE_KEY = b"caucus/v1/message-key"
L_ADMISSION_TOKEN = b"caucus/v1/admission-token"
L_ADMISSION_TOKEN_HASH = b"caucus/v1/admission-token-hash"
L_JOIN_MAC_KEY = b"caucus/v1/join-mac-key"
L_JOIN_PROOF = b"caucus/v1/join-proof"
L_AUTH = b"caucus/v1/auth"
L_RELAY_ROTATION = b"caucus/v1/relay-rotation"
L_AGREEMENT = b"caucus/v1/agreement"
L_AGREEMENT_SIGN = b"caucus/v1/agreement-sign"
L_AGREEMENT_COUNTERSIGN = b"caucus/v1/agreement-countersign"

ZERO32 = bytes(32)
ZERO_NONCE = bytes(12)
MAX_CONTENT_LEN = 262144


def prefix(label: bytes) -> bytes:
    assert len(label) < 256
    return bytes([len(label)]) + label


def labelled_hash(label: bytes, m: bytes) -> bytes:
    return hashlib.sha256(prefix(label) + m).digest()


def hmac_sha256(key: bytes, m: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(m)
    return h.finalize()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def expand(secret: bytes, label: bytes, m: bytes) -> bytes:
    """Expand(S, L, m): HKDF-Expand with S as the PRK, no Extract step."""
    return hkdf_expand(secret, prefix(label) + m, 32)


def mac(key: bytes, label: bytes, m: bytes) -> bytes:
    return hmac_sha256(key, prefix(label) + m)


def mac_verify(key: bytes, label: bytes, m: bytes, tag: bytes) -> bool:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(prefix(label) + m)
    try:
        h.verify(tag)  # constant time
        return True
    except InvalidSignature:
        return False


def seal_once(key: bytes, aad: bytes, pt: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(ZERO_NONCE, pt, aad)


def open_once(key: bytes, aad: bytes, ct: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(ZERO_NONCE, ct, aad)
    except InvalidTag:
        fail("decrypt_failed")


P25519 = 2**255 - 19
# The y-coordinates of the Ed25519 points of small order (2.1): the
# identity (1), order 2 (p - 1), order 4 (0), and the two of order 8.
ED25519_SMALL_ORDER_Y = {
    1, P25519 - 1, 0,
    int.from_bytes(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"),
    int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"),
}
# The X25519 u-coordinates of small order, top bit cleared (5.2): 0, 1, the
# two of order 8, p - 1, and the non-canonical p and p + 1.
X25519_SMALL_ORDER = {
    0, 1, P25519 - 1, P25519, P25519 + 1,
    int.from_bytes(bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little"),
    int.from_bytes(bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), "little"),
}


def ed25519_key_refused(key: bytes) -> bool:
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    return y >= P25519 or y in ED25519_SMALL_ORDER_Y


def x25519_small_order(key: bytes) -> bool:
    return int.from_bytes(key, "little") & ((1 << 255) - 1) in X25519_SMALL_ORDER


def verify_sig(signing_key: bytes, label: bytes, m: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(signing_key).verify(sig, prefix(label) + m)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------------------
# HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305 (2.4)
# ---------------------------------------------------------------------------

SUITE_ID_KEM = b"KEM" + struct.pack(">H", 0x0020)
SUITE_ID = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0003)


def _labeled_extract(sid: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac_sha256(salt, b"HPKE-v1" + sid + label + ikm)


def _labeled_expand(sid: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(prk, struct.pack(">H", length) + b"HPKE-v1" + sid + label + info, length)


def _dh(sk: bytes, pk: bytes) -> bytes:
    try:
        out = X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(pk))
    except ValueError:  # OpenSSL refuses an all-zero result itself
        fail("low_order_point")
    if out == ZERO32:
        fail("low_order_point")
    return out


def _key_schedule(dh: bytes, enc: bytes, pk_r: bytes, info: bytes):
    kem_context = enc + pk_r
    eae_prk = _labeled_extract(SUITE_ID_KEM, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(SUITE_ID_KEM, eae_prk, b"shared_secret", kem_context, 32)
    psk_id_hash = _labeled_extract(SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(SUITE_ID, b"", b"info_hash", info)
    ctx = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(SUITE_ID, shared_secret, b"secret", b"")
    key = _labeled_expand(SUITE_ID, secret, b"key", ctx, 32)
    base_nonce = _labeled_expand(SUITE_ID, secret, b"base_nonce", ctx, 12)
    return key, base_nonce


def x25519_public(sk: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(sk)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def hpke_open(sk_r: bytes, enc: bytes, info: bytes, ct: bytes, aad: bytes = b"") -> bytes:
    if len(enc) != 32:
        fail("hpke_failed", "enc is not 32 bytes")
    pk_r = x25519_public(sk_r)
    dh = _dh(sk_r, enc)
    key, base_nonce = _key_schedule(dh, enc, pk_r, info)
    try:
        return ChaCha20Poly1305(key).decrypt(base_nonce, ct, aad)
    except InvalidTag:
        fail("hpke_failed")


def hpke_seal(pk_r: bytes, info: bytes, pt: bytes, sk_e: Optional[bytes] = None, aad: bytes = b""):
    sk_e = sk_e if sk_e is not None else os.urandom(32)
    enc = x25519_public(sk_e)
    dh = _dh(sk_e, pk_r)
    key, base_nonce = _key_schedule(dh, enc, pk_r, info)
    return enc, ChaCha20Poly1305(key).encrypt(base_nonce, pt, aad)


# ---------------------------------------------------------------------------
# Identities (section 5)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicIdentity:
    signing_key: bytes
    dh_key: bytes
    self_signature: bytes

    def encode(self) -> bytes:
        return self.signing_key + self.dh_key + self.self_signature

    @staticmethod
    def read(r: Reader) -> "PublicIdentity":
        ident = PublicIdentity(r.fixed(32), r.fixed(32), r.fixed(64))
        # 5.2: neither key may have small order (nor the signing key be a
        # non-canonical encoding, 2.1); failure is `malformed`.
        if ed25519_key_refused(ident.signing_key):
            fail("malformed", "identity signing key is of small order or not canonical")
        if x25519_small_order(ident.dh_key):
            fail("malformed", "identity DH key is of small order")
        # 5.2: decoding verifies the self-signature; failure is `malformed`.
        if not verify_sig(ident.signing_key, L_IDENTITY, ident.signing_key + ident.dh_key, ident.self_signature):
            fail("malformed", "identity self-signature does not verify")
        return ident

    @property
    def fingerprint(self) -> bytes:
        return labelled_hash(L_FINGERPRINT, self.signing_key + self.dh_key)


def safety_code(fp: bytes) -> str:
    groups = []
    for i in range(6):
        n = int.from_bytes(fp[5 * i : 5 * i + 5], "big")
        groups.append(f"{n % 100000:05d}")
    return " ".join(groups)


class DeviceKeys:
    def __init__(self, ed_seed: Optional[bytes] = None, x_secret: Optional[bytes] = None):
        self.ed = Ed25519PrivateKey.from_private_bytes(ed_seed) if ed_seed else Ed25519PrivateKey.generate()
        self.x_secret = x_secret if x_secret is not None else os.urandom(32)
        signing_key = self.ed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        dh_key = x25519_public(self.x_secret)
        self.public = PublicIdentity(signing_key, dh_key, self.sign(L_IDENTITY, signing_key + dh_key))

    def sign(self, label: bytes, m: bytes) -> bytes:
        return self.ed.sign(prefix(label) + m)

    @property
    def fingerprint(self) -> bytes:
        return self.public.fingerprint


# ---------------------------------------------------------------------------
# Rosters (section 7) and sealed labels (8.2)
# ---------------------------------------------------------------------------

ROLE_MEDIATOR, ROLE_COMEDIATOR, ROLE_PARTY_MEMBER = 1, 2, 3
ROLE_NAMES = {1: "Mediator", 2: "CoMediator", 3: "PartyMember"}
KIND_PRIVATE, KIND_JOINT, KIND_SIDE = 1, 2, 3
PHASE_CLOSED = 5


def is_mediator_role(role: int) -> bool:
    return role in (ROLE_MEDIATOR, ROLE_COMEDIATOR)


def label_key(joint_secret: bytes, session: bytes, joint: bytes, epoch: int, subject: bytes, salt: bytes) -> bytes:
    """8.2: the subject with its u32 length."""
    info = session + joint + struct.pack(">Q", epoch) + Writer().bytes(subject).done() + salt
    return expand(joint_secret, L_LABEL_KEY, info)


@dataclass(frozen=True)
class SealedLabel:
    epoch: int
    salt: bytes
    ciphertext: bytes

    @staticmethod
    def read(r: Reader) -> "SealedLabel":
        return SealedLabel(r.u64(), r.fixed(16), r.bytes())


@dataclass(frozen=True)
class Party:
    id: bytes
    label: SealedLabel
    withdrawn: bool


@dataclass(frozen=True)
class Member:
    identity: PublicIdentity
    role: int
    party: Optional[bytes]
    name: SealedLabel

    @property
    def fingerprint(self) -> bytes:
        return self.identity.fingerprint


@dataclass(frozen=True)
class Room:
    id: bytes
    kind: tuple  # (KIND_PRIVATE, party_id) | (KIND_JOINT,) | (KIND_SIDE,)
    open: bool
    epoch: int
    members: tuple


@dataclass(frozen=True)
class ChainHead:
    room: bytes
    member: bytes
    seq: int
    hash: bytes

    @staticmethod
    def read(r: Reader) -> "ChainHead":
        return ChainHead(r.fixed(16), r.fixed(32), r.u64(), r.fixed(32))


@dataclass
class Roster:
    session: bytes
    version: int
    previous: bytes
    phase: int
    parties: list
    members: list
    rooms: list
    heads: list  # of ChainHead, for the epochs this roster ends (7.2)

    @staticmethod
    def read(r: Reader) -> "Roster":
        session, version, previous = r.fixed(16), r.u64(), r.fixed(32)
        phase = r.tag({1, 2, 3, 4, 5})
        parties = r.list(lambda r: Party(r.fixed(16), SealedLabel.read(r), r.boolean()))
        members = r.list(
            lambda r: Member(
                PublicIdentity.read(r), r.tag({1, 2, 3}), r.option(lambda r: r.fixed(16)), SealedLabel.read(r)
            )
        )

        def room(r: Reader) -> Room:
            rid = r.fixed(16)
            kind = r.tag({1, 2, 3})
            kind_t = (kind, r.fixed(16)) if kind == KIND_PRIVATE else (kind,)
            return Room(rid, kind_t, r.boolean(), r.u64(), tuple(r.list(lambda r: r.fixed(32))))

        return Roster(session, version, previous, phase, parties, members, r.list(room), r.list(ChainHead.read))

    def lead(self) -> Member:
        return next(m for m in self.members if m.role == ROLE_MEDIATOR)

    def member(self, fp: bytes) -> Optional[Member]:
        return next((m for m in self.members if m.fingerprint == fp), None)

    def room(self, rid: bytes) -> Optional[Room]:
        return next((x for x in self.rooms if x.id == rid), None)

    def joint(self) -> Room:
        return next(x for x in self.rooms if x.kind[0] == KIND_JOINT)

    def validate(self) -> None:
        """The well-formedness rules of 7.4, in order; `invalid_roster`."""

        def bad(why: str):
            fail("invalid_roster", why)

        if self.version == 0:
            bad("version 0")
        if (self.version == 1) != (self.previous == ZERO32):
            bad("version 1 if and only if previous is zero")
        if sum(1 for m in self.members if m.role == ROLE_MEDIATOR) != 1:
            bad("not exactly one lead mediator")
        party_ids = [p.id for p in self.parties]
        if len(set(party_ids)) != len(party_ids):
            bad("duplicate party id")
        fps = [m.fingerprint for m in self.members]
        if len(set(fps)) != len(fps):
            bad("duplicate member")
        room_ids = [x.id for x in self.rooms]
        if len(set(room_ids)) != len(room_ids):
            bad("duplicate room id")
        for m in self.members:
            if is_mediator_role(m.role) and m.party is not None:
                bad("a mediator with a party")
            if m.role == ROLE_PARTY_MEMBER and (m.party is None or m.party not in party_ids):
                bad("a party member without a known party")
        if sum(1 for x in self.rooms if x.kind[0] == KIND_JOINT) != 1:
            bad("not exactly one joint room")
        for p in party_ids:
            if sum(1 for x in self.rooms if x.kind == (KIND_PRIVATE, p)) != 1:
                bad("a party without exactly one private room")
        by_fp = {m.fingerprint: m for m in self.members}
        mediators = [m.fingerprint for m in self.members if is_mediator_role(m.role)]
        for x in self.rooms:
            if any(a >= b for a, b in zip(x.members, x.members[1:])):
                bad("room members not strictly ascending")
            if any(fp not in by_fp for fp in x.members):
                bad("a room member not in the roster")
            if any(fp not in x.members for fp in mediators):
                bad("a mediator missing from a room")
            if x.epoch < 1:
                bad("room epoch 0")
            if x.kind[0] == KIND_PRIVATE:
                if x.kind[1] not in party_ids:
                    bad("private room of an unknown party")
                for fp in x.members:
                    m = by_fp[fp]
                    if not is_mediator_role(m.role) and m.party != x.kind[1]:
                        bad("another party's member in a private room")
        joint = self.joint()
        withdrawn = {p.id: p.withdrawn for p in self.parties}
        for m in self.members:
            if m.role != ROLE_PARTY_MEMBER:
                continue
            fp = m.fingerprint
            if not any(x.kind == (KIND_PRIVATE, m.party) and fp in x.members for x in self.rooms):
                bad("a party member not in their party's private room")
            if (fp in joint.members) == withdrawn[m.party]:
                bad("a party member in the joint room while their party has withdrawn, or out of it while not")
            if withdrawn[m.party] and any(x.kind == (KIND_SIDE,) and fp in x.members for x in self.rooms):
                bad("a withdrawn party's member in a side room")
        labels = [p.label for p in self.parties] + [m.name for m in self.members]
        if any(label.epoch != joint.epoch for label in labels):
            bad("a label or name not sealed at the joint room's epoch")
        if self.version == 1 and self.heads:
            bad("version 1 with chain heads")
        if any((a.room, a.member) >= (b.room, b.member) for a, b in zip(self.heads, self.heads[1:])):
            bad("chain heads not strictly ascending by room and member")
        if any(not 1 <= head.seq < 2**64 - 1 for head in self.heads):
            bad("a chain head's sequence number is 0 or 2^64 - 1")


@dataclass
class SignedObject:
    body: bytes
    signature: bytes
    value: object


def read_signed(data: bytes, read_body: Callable[[Reader], object]) -> SignedObject:
    """Signed<T> (section 6): the body must decode as exactly one T."""
    r = Reader(data)
    body = r.bytes()
    value = decode_exact(body, read_body)
    sig = r.fixed(64)
    r.end()
    return SignedObject(body, sig, value)


def verify_roster(signed: SignedObject, pinned: bytes) -> Roster:
    """7.5."""
    roster: Roster = signed.value
    roster.validate()
    lead = roster.lead()
    if lead.fingerprint != pinned:
        fail("unpinned_mediator")
    if not verify_sig(lead.identity.signing_key, L_ROSTER, signed.body, signed.signature):
        fail("bad_signature", "roster signature")
    return roster


# ---------------------------------------------------------------------------
# Key bundles (8.4)
# ---------------------------------------------------------------------------


@dataclass
class KeyBundle:
    session: bytes
    room: bytes
    epoch: int
    roster: bytes
    entries: list  # (recipient, enc, ciphertext)

    @staticmethod
    def read(r: Reader) -> "KeyBundle":
        return KeyBundle(
            r.fixed(16), r.fixed(16), r.u64(), r.fixed(32),
            r.list(lambda r: (r.fixed(32), r.fixed(32), r.bytes())),
        )


def room_key_info(session: bytes, room: bytes, epoch: int, recipient: bytes, roster_hash: bytes) -> bytes:
    return prefix(L_ROOM_KEY) + session + room + struct.pack(">Q", epoch) + recipient + roster_hash


# ---------------------------------------------------------------------------
# Content (section 9)
# ---------------------------------------------------------------------------

CT_TEXT, CT_FORWARD, CT_SHARE_RECEIPT, CT_CONSENT, CT_SYSTEM, CT_WITHDRAWAL, CT_AGREE = 1, 2, 3, 4, 5, 6, 7
CT_AGREEMENT_DRAFT, CT_AGREEMENT_SIGNATURE, CT_AGREEMENT_FINAL = 8, 9, 10
CT_DOCUMENT, CT_CARRIED_DOCUMENT = 13, 14
# Offer (11) and CarriedOffer (12) are not implemented here; they are refused.
CONTENT_TYPES = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, CT_DOCUMENT, CT_CARRIED_DOCUMENT}
SHARING = {"MediatorOnly": 1, "MayShare": 2}
SHARING_NAMES = {v: k for k, v in SHARING.items()}
MODE_NAMES = {1: "Verbatim", 2: "Reframed"}
SYSTEM_NAMES = {1: "MemberAdmitted", 2: "MemberRemoved", 3: "JointOpened", 4: "JointClosed",
                5: "PhaseChanged", 6: "PartyWithdrew", 7: "PartyRejoined"}
STEP_NAMES = {1: "Continue", 2: "JointMeeting"}
PHASE_NAMES = {1: "Preparation", 2: "IndividualMeetings", 3: "Negotiation", 4: "Agreement", 5: "Closed"}


# The agreement (9.4) and its attachments, which keep 9.6's rules for a
# document's size, title and name.
MAX_DOCUMENT_SIZE = 52428800


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def read_attachment(r: Reader) -> dict:
    a = {"title": r.string(), "name": r.string(), "size": r.u64(), "sha256": r.fixed(32)}
    if a["size"] > MAX_DOCUMENT_SIZE:
        fail("malformed", "an attachment over the document size limit")
    check_title_and_name(a["title"], a["name"], "an attachment")
    return a


def check_title_and_name(title: str, name: str, what: str) -> None:
    if not title.strip() or len(title.encode()) > 300 or has_control(title):
        fail("malformed", f"{what}'s title is 1 to 300 bytes of text on one line")
    if (not name or len(name.encode()) > 255 or name in (".", "..") or "/" in name or "\\" in name
            or has_control(name)):
        fail("malformed", f"{what}'s name is a file name and nothing more")


def media_type_ok(m: str) -> bool:
    """9.6: `type/subtype`, both parts non-empty, printable ASCII without spaces, at most 127 bytes."""
    if not m or len(m) > 127 or any(not (0x21 <= ord(c) <= 0x7E) for c in m):
        return False
    kind, slash, sub = m.partition("/")
    return bool(kind and slash and sub)


def read_document_ref(r: Reader) -> dict:
    """9.6 DocumentRef, with its rules (`DocumentRef::validate`)."""
    d = {"file": r.fixed(16), "key": r.fixed(32), "size": r.u64(), "hash": r.fixed(32),
         "title": r.string(), "name": r.string(), "media_type": r.string()}
    if d["size"] > MAX_DOCUMENT_SIZE:
        fail("malformed", "a document over the size limit")
    check_title_and_name(d["title"], d["name"], "a document")
    if not media_type_ok(d["media_type"]):
        fail("malformed", "a document's media type is not type/subtype")
    return d


def write_document_ref(w: Writer, d: dict) -> Writer:
    return (w.fixed(d["file"]).fixed(d["key"]).u64(d["size"]).fixed(d["hash"])
            .string(d["title"]).string(d["name"]).string(d["media_type"]))


def document_content(sharing: int, d: dict) -> bytes:
    return write_document_ref(Writer().u8(CT_DOCUMENT).u8(sharing), d).done()


# Documents (9.6): the payload of age v1 (STREAM over ChaCha20-Poly1305),
# padded with zeros to padded_len(size, 65536), in chunks of 65536 bytes.
DOC_CHUNK = 65536
DOC_TAG = 16


def payload_key(key: bytes) -> bytes:
    file_key, nonce = key[:16], key[16:]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)


def chunk_nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def doc_layout(size: int) -> tuple:
    """(padded, number of chunks) for a file of `size` bytes."""
    padded = padded_len(size, DOC_CHUNK)
    return padded, -(-padded // DOC_CHUNK)


def doc_chunk_len(padded: int, i: int) -> int:
    """len(chunk_i): the plaintext's length plus the tag."""
    chunks = -(-padded // DOC_CHUNK)
    plain = DOC_CHUNK if i < chunks - 1 else padded - DOC_CHUNK * (chunks - 1)
    return plain + DOC_TAG


def seal_document(data: bytes, key: bytes) -> list:
    """The chunks of `data` under `key` (file_key || nonce)."""
    padded, chunks = doc_layout(len(data))
    body = data + bytes(padded - len(data))
    aead = ChaCha20Poly1305(payload_key(key))
    return [aead.encrypt(chunk_nonce(i, i == chunks - 1), body[i * DOC_CHUNK:(i + 1) * DOC_CHUNK], b"")
            for i in range(chunks)]


class DocumentOpener:
    """9.6 Opening: chunk by chunk, in order, then the hash."""

    def __init__(self, ref: dict) -> None:
        self.ref = ref
        self.padded, self.chunks = doc_layout(ref["size"])
        self.aead = ChaCha20Poly1305(payload_key(ref["key"]))
        self.parts: list = []

    def open_chunk(self, i: int, chunk: bytes) -> None:
        if i != len(self.parts) or i >= self.chunks:
            fail("invalid_document", f"chunk {i} out of order")
        if len(chunk) != doc_chunk_len(self.padded, i):
            fail("invalid_document", f"chunk {i} has the wrong length")
        try:
            plain = self.aead.decrypt(chunk_nonce(i, i == self.chunks - 1), chunk, b"")
        except InvalidTag:
            fail("decrypt_failed", f"chunk {i}")
        keep = max(0, min(len(plain), self.ref["size"] - i * DOC_CHUNK))
        if any(plain[keep:]):
            fail("invalid_document", f"chunk {i}: padding that is not zero")
        self.parts.append(plain[:keep])

    def finish(self) -> bytes:
        if len(self.parts) != self.chunks:
            fail("invalid_document", "chunks missing")
        data = b"".join(self.parts)
        if hashlib.sha256(data).digest() != self.ref["hash"]:
            fail("invalid_document", "the document is not the one described")
        return data


def read_signatory(r: Reader) -> dict:
    return {"identity": PublicIdentity.read(r), "name": r.string(),
            "party": r.option(lambda r: (r.fixed(16), r.string()))}


def read_agreement(r: Reader) -> dict:
    return {"session": r.fixed(16), "title": r.string(), "terms": r.string(),
            "checklist": r.list(lambda r: r.string()), "attachments": r.list(read_attachment),
            "mediator": read_signatory(r), "signatories": r.list(read_signatory), "drafted_at": r.u64()}


def read_agreement_bytes(r: Reader) -> dict:
    """bytes(canonical Agreement), with its hash: the reader is strict, so the bytes read are the canonical ones."""
    raw = r.bytes()
    agreement = decode_exact(raw, read_agreement)
    agreement["hash"] = labelled_hash(L_AGREEMENT, raw)
    return agreement


def read_signed_agreement(r: Reader) -> dict:
    return {"agreement": read_agreement_bytes(r), "signatures": r.list(lambda r: r.fixed(64)),
            "countersignature": r.fixed(64)}


def verify_signed_agreement(signed: dict) -> None:
    """9.4: one signature per signatory, each over the hash; the countersignature over the hash and them."""
    a, sigs = signed["agreement"], signed["signatures"]
    if len(sigs) != len(a["signatories"]):
        fail("bad_signature", "agreement: a signature is missing")
    for s, sig in zip(a["signatories"], sigs):
        if not verify_sig(s["identity"].signing_key, L_AGREEMENT_SIGN, a["hash"], sig):
            fail("bad_signature", "agreement signature")
    if not verify_sig(a["mediator"]["identity"].signing_key, L_AGREEMENT_COUNTERSIGN,
                      a["hash"] + b"".join(sigs), signed["countersignature"]):
        fail("bad_signature", "agreement countersignature")


def attachments_json(agreement: dict) -> list:
    return [{"title": a["title"], "name": a["name"], "size": a["size"], "sha256": a["sha256"].hex()}
            for a in agreement["attachments"]]


def read_content(r: Reader) -> dict:
    t = r.tag(CONTENT_TYPES)
    if t == CT_TEXT:
        return {"type": t, "sharing": r.tag({1, 2}), "body": r.string()}
    if t == CT_FORWARD:
        return {"type": t, "source_room": r.fixed(16), "source_message": r.fixed(32),
                "mode": r.tag({1, 2}), "text": r.string(), "author_consented": r.boolean()}
    if t == CT_SHARE_RECEIPT:
        return {"type": t, "source_message": r.fixed(32), "destination_room": r.fixed(16),
                "mode": r.tag({1, 2}), "text": r.string()}
    if t == CT_CONSENT:
        return {"type": t, "message": r.fixed(32)}
    if t == CT_SYSTEM:
        ev = r.tag(set(SYSTEM_NAMES))
        arg = r.fixed(32) if ev in (1, 2) else (r.tag({1, 2, 3, 4, 5}) if ev == 5 else None)
        return {"type": t, "event": ev, "arg": arg}
    if t == CT_AGREE:
        return {"type": t, "step": r.tag({1, 2})}
    if t == CT_AGREEMENT_DRAFT:
        return {"type": t, "agreement": read_agreement_bytes(r)}
    if t == CT_AGREEMENT_SIGNATURE:
        return {"type": t, "agreement": r.fixed(32), "signature": r.fixed(64)}
    if t == CT_AGREEMENT_FINAL:
        return {"type": t, "signed": decode_exact(r.bytes(), read_signed_agreement)}
    if t == CT_DOCUMENT:
        return {"type": t, "sharing": r.tag({1, 2}), "document": read_document_ref(r)}
    if t == CT_CARRIED_DOCUMENT:
        return {"type": t, "source_room": r.fixed(16), "source_message": r.fixed(32),
                "mode": r.tag({1, 2}), "document": read_document_ref(r), "author_consented": r.boolean()}
    return {"type": t}  # Withdrawal


# The header's content class (9.1): the class of the sender's role, whatever
# the content; the content type is the first byte inside the ciphertext.
CLASS_PARTY, CLASS_MEDIATOR = 1, 2
CONTENT_CLASSES = {CLASS_PARTY, CLASS_MEDIATOR}


def class_of(role: int) -> int:
    return CLASS_MEDIATOR if is_mediator_role(role) else CLASS_PARTY


# Padding (9.2): min 256 for content, 64 for labels and names (8.2).
CONTENT_MIN, LABEL_MIN = 256, 64


def padded_len(n: int, min_len: int) -> int:
    if n <= min_len:
        return min_len
    e = n.bit_length() - 1          # floor(log2(n))
    s = e.bit_length()              # floor(log2(e)) + 1
    step = 1 << (e - s)
    return -(-n // step) * step


def pad(x: bytes, min_len: int) -> bytes:
    out = Writer().bytes(x).done()
    return out + bytes(padded_len(len(out), min_len) - len(out))


def unpad(padded: bytes, min_len: int) -> bytes:
    r = Reader(padded)
    x = r.bytes()
    if any(padded[4 + len(x):]):
        fail("malformed", "padding that is not zero")
    if len(padded) != padded_len(4 + len(x), min_len):
        fail("malformed", "padding of the wrong length")
    return x


def text_content(sharing: int, body: str) -> bytes:
    return Writer().u8(CT_TEXT).u8(sharing).string(body).done()


def permitted(role: int, kind: tuple, content_type: int) -> None:
    """9.3."""
    if content_type in (CT_FORWARD, CT_SHARE_RECEIPT, CT_SYSTEM, CT_AGREEMENT_DRAFT,
                        CT_AGREEMENT_FINAL, CT_CARRIED_DOCUMENT) and not is_mediator_role(role):
        fail("not_permitted", "mediator-only content type")
    if content_type == CT_AGREEMENT_SIGNATURE and is_mediator_role(role):
        fail("not_permitted", "a mediator countersigns; party members sign")
    if content_type in (CT_CONSENT, CT_WITHDRAWAL, CT_AGREE) and (
        is_mediator_role(role) or kind[0] != KIND_PRIVATE
    ):
        fail("not_permitted", "party-member-only content type outside a private room")


# ---------------------------------------------------------------------------
# Envelopes (section 10)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    session: bytes
    room: bytes
    epoch: int
    sender: bytes
    seq: int
    previous: bytes
    content_class: int
    salt: bytes

    def encode(self) -> bytes:
        return (Writer().u16(1).fixed(self.session).fixed(self.room).u64(self.epoch).fixed(self.sender)
                .u64(self.seq).fixed(self.previous).u8(self.content_class).fixed(self.salt).done())

    @staticmethod
    def read(r: Reader) -> "Header":
        if r.u16() != 1:  # the version rule: read first, stop at once
            fail("unsupported_version")
        return Header(r.fixed(16), r.fixed(16), r.u64(), r.fixed(32), r.u64(), r.fixed(32),
                      r.tag(CONTENT_CLASSES), r.fixed(16))


@dataclass
class Envelope:
    header_bytes: bytes
    header: Header
    ciphertext: bytes
    signature: bytes

    @staticmethod
    def decode(data: bytes) -> "Envelope":
        r = Reader(data)
        hb = r.bytes()
        header = decode_exact(hb, Header.read)
        ct = r.bytes()
        sig = r.fixed(64)
        r.end()
        return Envelope(hb, header, ct, sig)

    @property
    def signed_body(self) -> bytes:
        return Writer().bytes(self.header_bytes).bytes(self.ciphertext).done()

    @property
    def hash(self) -> bytes:
        return labelled_hash(L_ENVELOPE_HASH, self.signed_body)

    def encode(self) -> bytes:
        return self.signed_body + self.signature


def seal_envelope(keys: DeviceKeys, room_secret: bytes, header: Header, content: bytes) -> Envelope:
    """10.3: `content` is canon(Content), padded here (9.2)."""
    pt = pad(content, CONTENT_MIN)
    if len(pt) > MAX_CONTENT_LEN:
        fail("too_large")
    hb = header.encode()
    ct = seal_once(expand(room_secret, L_MESSAGE_KEY, hb), hb, pt)
    env = Envelope(hb, header, ct, b"")
    env.signature = keys.sign(L_ENVELOPE, env.signed_body)
    return env


# ---------------------------------------------------------------------------
# Invites and joining (section 11)
# ---------------------------------------------------------------------------

LINK_PREFIX = "caucus:invite:v1:"


@dataclass
class Invite:
    relay: str
    relay_key: bytes
    session: bytes
    id: bytes
    secret: bytes
    mediator: bytes
    expires_at: int

    @staticmethod
    def read(r: Reader) -> "Invite":
        relay = r.string()
        inv = Invite(relay, r.fixed(32), r.fixed(16), r.fixed(16), r.fixed(32), r.fixed(32), r.u64())
        if len(relay.encode("utf-8")) > 2048:
            fail("malformed", "relay URL longer than 2048 bytes")
        return inv

    def encode(self) -> bytes:
        return (Writer().string(self.relay).fixed(self.relay_key).fixed(self.session).fixed(self.id).fixed(self.secret)
                .fixed(self.mediator).u64(self.expires_at).done())

    @staticmethod
    def from_link(link: str) -> "Invite":
        link = link.strip()
        if not link.startswith(LINK_PREFIX):
            fail("invalid_invite", "not a caucus:invite:v1: link")
        try:
            raw = b64d(link[len(LINK_PREFIX):])
        except ProtocolError:
            fail("invalid_invite", "bad base64url")
        inv = decode_exact(raw, Invite.read)
        if not (inv.relay.startswith("ws://") or inv.relay.startswith("wss://")):
            fail("invalid_invite", "relay is not ws:// or wss://")
        return inv

    def admission_token(self) -> bytes:
        return expand(self.secret, L_ADMISSION_TOKEN, self.session + self.id)

    def join_mac_key(self) -> bytes:
        return expand(self.secret, L_JOIN_MAC_KEY, self.session + self.id)

    def join_request(self, ident: PublicIdentity) -> bytes:
        proof = mac(self.join_mac_key(), L_JOIN_PROOF, self.session + self.id + ident.encode())
        return self.session + self.id + ident.encode() + proof


def canonical_url(url: str) -> str:
    """11.1: the one form of a relay URL that the auth signature covers."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    scheme = scheme.lower()
    cut = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))
    authority, path = rest[:cut].lower(), rest[cut:]
    host, colon, port = authority.rpartition(":")
    if colon and ((scheme == "ws" and port == "80") or (scheme == "wss" and port == "443")):
        authority = host
    return f"{scheme}://{authority}{path.rstrip('/')}"


def auth_body(nonce: bytes, relay_fp: bytes, url: str) -> bytes:
    """12.3: what a device's answer to the challenge signs."""
    return Writer().fixed(nonce).fixed(relay_fp).string(canonical_url(url)).done()


def check_relay(pinned: bytes, shown: "PublicIdentity", rotations: list) -> None:
    """12.3: the relay shows the pinned key, or rotation statements, each
    signed by the key before, lead from the pinned key to the one shown."""
    if shown.fingerprint == pinned:
        return
    chain = []
    for text in rotations:
        raw = b64d(text)
        signed = read_signed(raw, lambda r: (PublicIdentity.read(r), PublicIdentity.read(r), r.u64()))
        chain.append(signed)
    start = next((i for i, s in enumerate(chain) if s.value[0].fingerprint == pinned), None)
    if start is None:
        fail("unpinned_relay", "the relay shows another key than the invite's, with no rotation from it")
    current = None
    for signed in chain[start:]:
        old, new, _ = signed.value
        if current is not None and current != old:
            fail("unpinned_relay", "the relay's rotation statements do not link up")
        if not verify_sig(old.signing_key, L_RELAY_ROTATION, signed.body, signed.signature):
            fail("bad_signature", "relay rotation")
        current = new
    if current != shown:
        fail("unpinned_relay", "the relay's rotations do not lead to the key it shows")


def token_hash(token: bytes) -> bytes:
    return labelled_hash(L_ADMISSION_TOKEN_HASH, token)


# ---------------------------------------------------------------------------
# A member's view of one session: rosters, keys, chains (7.6, 8.5, 10.5, 10.6)
# ---------------------------------------------------------------------------


@dataclass
class Opened:
    header: Header
    hash: bytes
    content: dict
    gap: Optional[tuple]


@dataclass
class EpochRecord:
    """One (room, epoch), as the roster that began it fixed it (7.6)."""

    kind: tuple
    open: bool
    members: dict  # fingerprint -> role in that roster
    ended: Optional[dict] = None  # once a later roster ended it: fingerprint -> (seq, hash)

    def same_room(self, other: "EpochRecord") -> bool:
        return (self.kind, self.open, self.members) == (other.kind, other.open, other.members)


def epoch_record(roster: Roster, room: Room) -> EpochRecord:
    return EpochRecord(room.kind, room.open, {fp: roster.member(fp).role for fp in room.members})


@dataclass
class SessionView:
    session: bytes
    pinned: bytes
    me: DeviceKeys
    held: Optional[Roster] = None
    held_hash: bytes = ZERO32
    hashes: list = field(default_factory=list)          # roster hash of each accepted version, oldest first
    accepted: dict = field(default_factory=dict)        # roster hash -> {room: epoch}
    epochs: dict = field(default_factory=dict)          # (room, epoch) -> EpochRecord
    identities: dict = field(default_factory=dict)      # fingerprint -> identity
    keys: dict = field(default_factory=dict)            # (room, epoch) -> secret
    chains: dict = field(default_factory=dict)          # (room, sender) -> {seq: (hash, previous)}
    floors: dict = field(default_factory=dict)          # (room, sender) -> seq up to which a joiner's chain counts as seen

    # 7.6
    def accept_roster(self, data: bytes) -> Optional[Roster]:
        """Accept the next roster and return it; None for a roster already
        accepted, delivered again (nothing changes)."""
        signed = read_signed(data, Roster.read)
        roster = verify_roster(signed, self.pinned)
        if roster.session != self.session:
            fail("wrong_session")
        rhash = labelled_hash(L_ROSTER_HASH, signed.body)
        held_version = self.held.version if self.held else 0
        if roster.version <= held_version:
            if self.hashes[roster.version - 1] == rhash:
                return None
            fail("stale_roster", f"held version is {held_version}")
        if roster.version != held_version + 1 or roster.previous != self.held_hash:
            fail("roster_chain", f"version {roster.version} after {held_version}")
        if self.held is not None:
            if self.held.phase == PHASE_CLOSED:
                fail("invalid_roster", "nothing follows a closed session's roster")
            if roster.phase < self.held.phase:
                fail("invalid_roster", "the phase went back")
        for x in roster.rooms:
            recorded = [e for (rid, e) in self.epochs if rid == x.id]
            if not recorded:
                if x.epoch != 1:
                    fail("invalid_roster", "a new room's epoch is not 1")
                continue
            highest = max(recorded)
            if x.epoch < highest:
                fail("invalid_roster", "a room's epoch went backwards")
            if x.epoch == highest and not self.epochs[(x.id, highest)].same_room(epoch_record(roster, x)):
                fail("invalid_roster", "a room's members, their roles or its openness changed without a new epoch")
            if x.epoch > highest + 1:
                fail("invalid_roster", "a room's epoch moves on by one")
        ended = {}  # room -> (epoch, {fingerprint: (seq, hash)})
        for x in self.held.rooms if self.held else []:
            nxt = roster.room(x.id)
            if nxt is None or nxt.epoch != x.epoch:
                ended[x.id] = (x.epoch, {})
        for head in roster.heads:
            if head.room not in ended:
                fail("invalid_roster", "a chain head for a room whose epoch did not end")
            epoch, heads = ended[head.room]
            if head.member not in self.epochs[(head.room, epoch)].members:
                fail("invalid_roster", "a chain head for someone not in the ended epoch")
            heads[head.member] = (head.seq, head.hash)
        for rid, (epoch, heads) in ended.items():
            self.epochs[(rid, epoch)].ended = heads
        for x in roster.rooms:
            self.epochs.setdefault((x.id, x.epoch), epoch_record(roster, x))
        for m in roster.members:
            self.identities[m.fingerprint] = m.identity
        self.accepted[rhash] = {x.id: x.epoch for x in roster.rooms}
        self.hashes.append(rhash)
        self.held, self.held_hash = roster, rhash
        return roster

    # 8.5
    def open_key_bundle(self, data: bytes) -> tuple:
        signed = read_signed(data, KeyBundle.read)
        lead = self.identities.get(self.pinned)
        if lead is None:
            fail("no_roster")
        if not verify_sig(lead.signing_key, L_KEY_BUNDLE, signed.body, signed.signature):
            fail("bad_signature", "key bundle signature")
        b: KeyBundle = signed.value
        if b.session != self.session:
            fail("wrong_session")
        if b.roster not in self.accepted:
            fail("bundle_mismatch", "names a roster not accepted")
        if self.accepted[b.roster].get(b.room) != b.epoch:
            fail("bundle_mismatch", "the room does not have that epoch in that roster")
        record = self.epochs.get((b.room, b.epoch))
        if record is None:
            fail("unknown_epoch")
        members = record.members
        recipients = [e[0] for e in b.entries]
        if len(recipients) != len(members) or any(fp not in recipients for fp in members):
            fail("bundle_mismatch", "not sealed to exactly the room's members, once each")
        me = self.me.fingerprint
        if me not in members:
            fail("not_a_recipient")
        entry = next((e for e in b.entries if e[0] == me), None)
        if entry is None:
            fail("not_a_recipient")
        secret = hpke_open(self.me.x_secret, entry[1], room_key_info(b.session, b.room, b.epoch, me, b.roster), entry[2])
        if len(secret) != 32:
            fail("bundle_mismatch", "the secret is not 32 bytes")
        held = self.keys.get((b.room, b.epoch))
        if held is not None and held != secret:
            fail("bundle_mismatch", "another key is held for this epoch")
        self.keys[(b.room, b.epoch)] = secret
        return b.room, b.epoch

    # 8.2
    def open_label(self, label: SealedLabel, subject: bytes) -> str:
        if self.held is None:
            fail("no_roster")
        joint = self.held.joint()
        key = self.keys.get((joint.id, label.epoch))
        if key is None:
            fail("missing_room_key", "joint room key for the label's epoch")
        lkey = label_key(key, self.session, joint.id, label.epoch, subject, label.salt)
        try:
            return unpad(open_once(lkey, b"", label.ciphertext), LABEL_MIN).decode("utf-8")
        except UnicodeDecodeError:
            fail("malformed", "label is not UTF-8")

    # 10.6
    def chain(self, room: bytes, sender: bytes) -> dict:
        """The chain of (room, sender), started, if new, from the head (s, h)
        recorded when the epoch before our first in the room ended: every
        seq up to s counts as seen (the floor), s with hash h."""
        chain = self.chains.get((room, sender))
        if chain is None:
            first = min((e for (rid, e) in self.keys if rid == room), default=None)
            record = self.epochs.get((room, first - 1)) if first is not None else None
            head = record.ended.get(sender) if record is not None and record.ended is not None else None
            chain = {head[0]: (head[1], None)} if head is not None else {}
            if head is not None:
                self.floors[(room, sender)] = head[0]
        return chain

    def check_chain(self, room: bytes, sender: bytes, seq: int, previous: bytes, h: bytes):
        chain = self.chain(room, sender)
        if seq == 0 or seq == 2**64 - 1:
            fail("chain_broken", f"seq {seq}")
        if seq in chain or seq <= self.floors.get((room, sender), 0):
            fail("replay", f"seq {seq} already seen")
        expected = ZERO32 if seq == 1 else (chain[seq - 1][0] if seq - 1 in chain else None)
        if expected is not None and expected != previous:
            fail("chain_broken", "previous does not link")
        if seq + 1 in chain and chain[seq + 1][1] != h:
            fail("chain_broken", "next does not link")
        highest = max(chain) if chain else 0
        return (highest + 1, seq - 1) if seq > highest + 1 else None

    def record_link(self, room: bytes, sender: bytes, seq: int, h: bytes, previous: bytes) -> None:
        self.chains.setdefault((room, sender), self.chain(room, sender))[seq] = (h, previous)

    # 10.5
    def open_envelope(self, data: bytes) -> Opened:
        env = Envelope.decode(data)
        h = env.header
        if h.session != self.session:
            fail("wrong_session")
        record = self.epochs.get((h.room, h.epoch))
        if record is None:
            fail("unknown_epoch")
        role = record.members.get(h.sender)
        if role is None:
            fail("not_a_member")
        if not record.open and role == ROLE_PARTY_MEMBER:
            fail("room_closed")
        eh = env.hash
        if record.ended is not None:
            last, last_hash = record.ended.get(h.sender, (0, ZERO32))
            if h.seq > last:
                fail("after_epoch_ended", f"seq {h.seq} after the sender's head {last}")
            if h.seq == last and eh != last_hash:
                fail("fork", f"another envelope at the sender's head {last}")
        secret = self.keys.get((h.room, h.epoch))
        if secret is None:
            fail("missing_room_key")
        if not verify_sig(self.identities[h.sender].signing_key, L_ENVELOPE, env.signed_body, env.signature):
            fail("bad_signature", "envelope signature")
        if h.content_class != class_of(role):
            fail("content_type_mismatch", "the header's class is not the sender's role's")
        if len(env.ciphertext) > MAX_CONTENT_LEN + 16:
            fail("too_large")
        pt = open_once(expand(secret, L_MESSAGE_KEY, env.header_bytes), env.header_bytes, env.ciphertext)
        content = decode_exact(unpad(pt, CONTENT_MIN), read_content)
        permitted(role, record.kind, content["type"])
        gap = self.check_chain(h.room, h.sender, h.seq, h.previous, eh)
        self.record_link(h.room, h.sender, h.seq, eh, h.previous)
        return Opened(h, eh, content, gap)

    # 10.3
    def seal(self, room_id: bytes, content: bytes) -> Envelope:
        if self.held is None:
            fail("no_roster")
        room = self.held.room(room_id)
        if room is None:
            fail("unknown_room")
        me = self.me.fingerprint
        member = self.held.member(me)
        if me not in room.members or member is None:
            fail("not_a_member")
        if not room.open and not is_mediator_role(member.role):
            fail("room_closed")
        permitted(member.role, room.kind, content[0])
        secret = self.keys.get((room.id, room.epoch))
        if secret is None:
            fail("missing_room_key")
        chain = self.chains.get((room.id, me), {})
        seq = max(chain) + 1 if chain else 1
        previous = chain[seq - 1][0] if chain else ZERO32
        header = Header(self.session, room.id, room.epoch, me, seq, previous, class_of(member.role), os.urandom(16))
        env = seal_envelope(self.me, secret, header, content)
        self.record_link(room.id, me, seq, env.hash, previous)
        return env


# ---------------------------------------------------------------------------
# Wire protocol (section 12)
# ---------------------------------------------------------------------------


class Fatal(Exception):
    """Ends the run with exit status 1."""


def refusal(type_: str, code, message) -> str:
    """An `error` reply in words (12.9): every code, known or not, is a
    refusal that changed nothing; `unavailable` says to try again later."""
    if code == "unavailable":
        return (f"the relay can't save anything just now, so {type_} was not done; "
                "nothing was lost: try again in a minute")
    return f"the relay refused {type_}: {code}: {message}"


def log(msg: str) -> None:
    print(f"caucus_interop: {msg}", file=sys.stderr, flush=True)


def emit(obj: dict) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


class WireClient:
    def __init__(self, ws, view: SessionView, invite: Invite):
        self.ws = ws
        self.view = view
        self.invite = invite
        self.next_id = 1
        self.admitted = False
        self.following = False
        self.pending_envelopes: list = []  # (index, bytes) waiting for a roster or key
        self.pending_bundles: list = []
        self.my_room: Optional[bytes] = None
        self.got_text = False
        self.got_forward = False
        self.labels_shown = False
        self.documents: list = []  # (hash, DocumentRef) of the lead mediator's documents in our room

    async def recv(self) -> dict:
        msg = await self.ws.recv()
        if not isinstance(msg, str):
            raise Fatal("the relay sent a binary frame")
        try:
            frame = json.loads(msg)
        except ValueError:
            raise Fatal(f"the relay sent a frame that is not JSON: {msg[:200]!r}")
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise Fatal(f"the relay sent a frame without a type: {msg[:200]!r}")
        if frame.get("v") != 1:
            raise Fatal(f"the relay speaks protocol version {frame.get('v')!r}; this client speaks 1")
        if not json_integers_ok(frame):
            raise Fatal(f"the relay sent a number that is not an integer from 0 to 2^53 - 1: {msg[:200]!r}")
        return frame

    async def request(self, type_: str, **fields) -> dict:
        """Send a request, handle events until its reply, return the reply."""
        rid = self.next_id
        self.next_id += 1
        # 12.1: exactly the fields of the type (the caller gives those), and
        # no number above 2^53 - 1.
        frame = {"v": 1, "id": rid, "type": type_, **fields}
        if not json_integers_ok(frame):
            raise Fatal(f"refusing to send a number above 2^53 - 1 in {type_}")
        await self.ws.send(json.dumps(frame))
        while True:
            frame = await self.recv()
            if frame["type"] in ("ok", "error"):
                if frame.get("id") != rid:
                    raise Fatal(f"reply to an unknown request: {frame}")
                if frame["type"] == "error":
                    raise Fatal(refusal(type_, frame.get("code"), frame.get("message")))
                return frame
            self.on_event(frame)

    async def pump_until(self, done: Callable[[], bool]) -> None:
        while not done():
            frame = await self.recv()
            if frame["type"] in ("ok", "error"):
                raise Fatal(f"unexpected reply: {frame}")
            self.on_event(frame)

    # -- events --------------------------------------------------------------

    def on_event(self, ev: dict) -> None:
        t = ev["type"]
        try:
            if t == "roster":
                self.on_roster(ev)
            elif t == "key_bundle":
                self.pending_bundles.append(b64d(ev["bundle"]))
                self.retry()
            elif t == "envelope":
                if not isinstance(ev["index"], int) or isinstance(ev["index"], bool) or ev["index"] < 1:
                    fail("malformed", "envelope index is not a positive integer")
                self.pending_envelopes.append((ev["index"], b64d(ev["envelope"])))
                self.retry()
            elif t == "declined":
                raise Fatal("the mediator declined the join request")
            elif t == "session_closed":
                raise Fatal("the session was closed")
            elif t in ("presence", "status", "join_request", "challenge"):
                pass
            else:
                log(f"ignoring unknown event type {t!r}")
        except ProtocolError as e:
            raise Fatal(f"verification failed on a {t} event: {e}")
        except (KeyError, TypeError) as e:
            raise Fatal(f"malformed {t} event (field {e}): {json.dumps(ev)[:300]}")

    def on_roster(self, ev: dict) -> None:
        if b64d(ev["session"], 16) != self.view.session:
            fail("wrong_session", "roster event for another session")
        data = b64d(ev["roster"])
        if not self.following:
            # 11.6 step 4: while waiting, a roster that names us is the signal
            # to subscribe. It is still checked against the pinned mediator.
            roster = verify_roster(read_signed(data, Roster.read), self.view.pinned)
            if roster.session != self.view.session:
                fail("wrong_session")
            if roster.member(self.view.me.fingerprint) is not None:
                log(f"admitted: roster version {roster.version} names us")
                self.admitted = True
            return
        was_member = self.view.held is not None and self.view.held.member(self.view.me.fingerprint) is not None
        roster = self.view.accept_roster(data)
        if roster is None:
            log("a roster already accepted was delivered again (7.6); ignored")
            return
        log(f"accepted roster version {roster.version}")
        if was_member and roster.member(self.view.me.fingerprint) is None:
            raise Fatal("a roster removed us from the session")
        self.retry()

    def retry(self) -> None:
        """Open what is pending. Bundles wait for rosters (`no_roster`);
        envelopes wait for their epoch's roster or key."""
        progress = True
        while progress:
            progress = False
            for data in list(self.pending_bundles):
                try:
                    room, epoch = self.view.open_key_bundle(data)
                except ProtocolError as e:
                    if e.code in ("no_roster",) or (e.code == "bundle_mismatch" and "not accepted" in e.detail):
                        continue
                    raise
                self.pending_bundles.remove(data)
                log(f"opened the key for room {b64e(room)} epoch {epoch}")
                progress = True
            for item in list(self.pending_envelopes):
                try:
                    opened = self.view.open_envelope(item[1])
                except ProtocolError as e:
                    if e.code in ("unknown_epoch", "missing_room_key"):
                        continue
                    if e.code == "replay" and self.is_own_replay(item[1]):
                        self.pending_envelopes.remove(item)
                        log(f"own envelope at index {item[0]} delivered back; ignored (10.6)")
                        continue
                    raise
                self.pending_envelopes.remove(item)
                self.on_opened(item[0], opened)
                progress = True
        self.show_labels()

    def is_own_replay(self, data: bytes) -> bool:
        env = Envelope.decode(data)
        link = self.view.chains.get((env.header.room, env.header.sender), {}).get(env.header.seq)
        return link is not None and link[0] == env.hash

    def show_labels(self) -> None:
        """Open the sealed party labels and member names (8.2) once the joint
        key they are sealed under is held. Informative, but a failure is a
        verification failure."""
        v = self.view
        if self.labels_shown or v.held is None:
            return
        joint = v.held.joint()
        needed = {p.label.epoch for p in v.held.parties} | {m.name.epoch for m in v.held.members}
        if any((joint.id, e) not in v.keys for e in needed):
            return
        for p in v.held.parties:
            log(f"party {b64e(p.id)}: {v.open_label(p.label, p.id)!r}")
        for m in v.held.members:
            log(f"member {b64e(m.fingerprint)} ({ROLE_NAMES[m.role]}): {v.open_label(m.name, m.fingerprint)!r}")
        self.labels_shown = True

    def on_opened(self, index: int, o: Opened) -> None:
        h, c = o.header, o.content
        v = self.view
        base = {"room": b64e(h.room), "sender": b64e(h.sender), "index": index, "seq": h.seq,
                "hash": b64e(o.hash)}
        if o.gap:
            base["gap"] = list(o.gap)
        from_lead = h.sender == v.pinned
        if c["type"] == CT_TEXT:
            emit({"event": "message", "text": c["body"], "sharing": SHARING_NAMES[c["sharing"]], **base})
            if from_lead and h.room == self.my_room:
                self.got_text = True
        elif c["type"] == CT_FORWARD:
            emit({"event": "forward", "mode": MODE_NAMES[c["mode"]], "text": c["text"],
                  "author_consented": c["author_consented"], "source_room": b64e(c["source_room"]),
                  "source_message": b64e(c["source_message"]), **base})
            if from_lead:
                self.got_forward = True
        elif c["type"] == CT_SHARE_RECEIPT:
            emit({"event": "share_receipt", "mode": MODE_NAMES[c["mode"]], "text": c["text"],
                  "source_message": b64e(c["source_message"]),
                  "destination_room": b64e(c["destination_room"]), **base})
        elif c["type"] == CT_SYSTEM:
            arg = c["arg"]
            arg = b64e(arg) if isinstance(arg, bytes) else (PHASE_NAMES[arg] if arg else None)
            emit({"event": "system", "system": SYSTEM_NAMES[c["event"]], "arg": arg, **base})
        elif c["type"] == CT_CONSENT:
            emit({"event": "consent", "message": b64e(c["message"]), **base})
        elif c["type"] == CT_AGREE:
            emit({"event": "agree", "step": STEP_NAMES[c["step"]], **base})
        elif c["type"] == CT_AGREEMENT_DRAFT:
            a = c["agreement"]
            emit({"event": "agreement_proposed", "agreement": b64e(a["hash"]), "title": a["title"],
                  "terms": a["terms"], "checklist": a["checklist"], "attachments": attachments_json(a), **base})
        elif c["type"] == CT_AGREEMENT_SIGNATURE:
            emit({"event": "agreement_signed", "agreement": b64e(c["agreement"]), **base})
        elif c["type"] == CT_AGREEMENT_FINAL:
            verify_signed_agreement(c["signed"])
            a = c["signed"]["agreement"]
            emit({"event": "agreement_concluded", "agreement": b64e(a["hash"]),
                  "attachments": attachments_json(a), **base})
        elif c["type"] in (CT_DOCUMENT, CT_CARRIED_DOCUMENT):
            d = c["document"]
            line = {"event": "document", "title": d["title"], "name": d["name"], "media_type": d["media_type"],
                    "size": d["size"], "sha256": d["hash"].hex(), "file": b64e(d["file"])}
            if c["type"] == CT_DOCUMENT:
                line["sharing"] = SHARING_NAMES[c["sharing"]]
            else:
                line.update({"event": "document_carried", "mode": MODE_NAMES[c["mode"]],
                             "author_consented": c["author_consented"], "source_room": b64e(c["source_room"]),
                             "source_message": b64e(c["source_message"])})
            emit({**line, **base})
            if from_lead and h.room == self.my_room:
                self.documents.append((o.hash, d))
        else:
            emit({"event": "withdrawal", **base})

    # -- documents (9.6, 13.5.14-13.5.16) ------------------------------------

    async def upload_document(self, path: str, sharing: int) -> tuple:
        """Encrypt the file, upload its chunks, post its `Document` in our
        private room. Returns (the envelope, the DocumentRef)."""
        with open(path, "rb") as f:
            data = f.read()
        name = os.path.basename(path)
        ref = {"file": os.urandom(16), "key": os.urandom(32), "size": len(data),
               "hash": hashlib.sha256(data).digest(), "title": name, "name": name,
               "media_type": "application/octet-stream"}
        content = document_content(sharing, ref)
        decode_exact(content, read_content)  # the rules of 9.6, before anything is sent
        chunks = seal_document(data, ref["key"])
        padded, _ = doc_layout(len(data))
        session = b64e(self.view.session)
        reply = await self.request("upload", session=session, file=b64e(ref["file"]), size=padded)
        if reply.get("chunks") != 0:
            raise Fatal(f"a fresh upload holds {reply.get('chunks')!r} chunks")
        for i, chunk in enumerate(chunks):
            await self.request("chunk", session=session, file=b64e(ref["file"]), index=i, data=b64e(chunk))
        log(f"uploaded {len(data)} bytes in {len(chunks)} chunks (padded to {padded})")
        env = self.view.seal(self.my_room, content)
        reply = await self.request("post", envelope=b64e(env.encode()))
        emit({"event": "document_sent", "name": name, "size": len(data), "sha256": ref["hash"].hex(),
              "sharing": SHARING_NAMES[sharing], "room": b64e(self.my_room), "index": reply.get("index"),
              "hash": b64e(env.hash)})
        return env, ref

    async def download_document(self, ref: dict) -> bytes:
        """Fetch and open every chunk, in order, then check the hash (9.6)."""
        opener = DocumentOpener(ref)
        for i in range(opener.chunks):
            reply = await self.request("download", session=b64e(self.view.session), file=b64e(ref["file"]), index=i)
            if not isinstance(reply.get("data"), str):
                raise Fatal(f"the reply to download has no data: {reply}")
            try:
                opener.open_chunk(i, b64d(reply["data"]))
            except ProtocolError as e:
                raise Fatal(f"chunk {i} of the document did not open: {e}")
        try:
            return opener.finish()
        except ProtocolError as e:
            raise Fatal(f"the document did not open: {e}")


async def run(relay_url: str, invite: Invite, text: str, sharing: int, document: Optional[str] = None) -> None:
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # websockets < 13
        from websockets import connect  # type: ignore

    keys = DeviceKeys()
    view = SessionView(invite.session, invite.mediator, keys)
    log(f"our fingerprint {b64e(keys.fingerprint)}, safety code {safety_code(keys.fingerprint)}")
    log(f"pinned mediator {b64e(invite.mediator)}, safety code {safety_code(invite.mediator)}")
    async with connect(relay_url, subprotocols=["caucus.v1"], max_size=16 * 1024 * 1024) as ws:
        if ws.subprotocol != "caucus.v1":
            raise Fatal(f"the relay selected subprotocol {ws.subprotocol!r}, not caucus.v1")
        c = WireClient(ws, view, invite)
        # 12.3: challenge, auth.
        challenge = await c.recv()
        if challenge["type"] != "challenge":
            raise Fatal(f"expected a challenge first, got {challenge['type']}")
        try:
            nonce = b64d(challenge["nonce"], 32)
            relay = decode_exact(b64d(challenge["relay"]), PublicIdentity.read)
            check_relay(invite.relay_key, relay, challenge["rotations"])
        except (ProtocolError, KeyError) as e:
            raise Fatal(f"bad challenge: {e}")
        signature = keys.sign(L_AUTH, auth_body(nonce, relay.fingerprint, relay_url))
        await c.request("auth", identity=b64e(keys.public.encode()), url=relay_url, signature=b64e(signature))
        log("authenticated")
        # 11.6: join, wait for a roster that names us.
        await c.request("join", token=b64e(invite.admission_token()),
                        request=b64e(invite.join_request(keys.public)))
        log("waiting to be admitted")
        await c.pump_until(lambda: c.admitted)
        # Subscribe from nothing: every roster from version 1, our bundles,
        # and the rooms' envelopes from our first epoch (13.5.9).
        c.following = True
        await c.request("subscribe", session=b64e(invite.session), roster_after=0, rooms=[])
        if view.held is None or view.held.member(keys.fingerprint) is None:
            raise Fatal("subscribed, but no accepted roster names us")
        me = view.held.member(keys.fingerprint)
        if me.role != ROLE_PARTY_MEMBER:
            raise Fatal("the roster does not make us a party member")
        room = next(x for x in view.held.rooms if x.kind == (KIND_PRIVATE, me.party))
        c.my_room = room.id
        log(f"our private room is {b64e(room.id)}")
        # Wait for the key of the room's current epoch (bundles can arrive live).
        await c.pump_until(lambda: (c.my_room, view.held.room(c.my_room).epoch) in view.keys)
        env = view.seal(c.my_room, text_content(sharing, text))
        reply = await c.request("post", envelope=b64e(env.encode()))
        log(f"posted our message at index {reply.get('index')} (hash {b64e(env.hash)})")
        emit({"event": "sent", "text": text, "sharing": SHARING_NAMES[sharing], "room": b64e(c.my_room),
              "index": reply.get("index"), "hash": b64e(env.hash)})
        if document is None:
            await c.pump_until(lambda: c.got_text and c.got_forward)
            log("received a text and a forward from the mediator; done")
            return
        # With a document: add it to our private room, then wait for a
        # document from the lead mediator there, and open it.
        await c.upload_document(document, sharing)
        await c.pump_until(lambda: bool(c.documents))
        h, ref = c.documents[0]
        data = await c.download_document(ref)
        emit({"event": "document_opened", "message": b64e(h), "name": ref["name"], "size": len(data),
              "sha256": hashlib.sha256(data).hexdigest()})
        log("opened the mediator's document; done")


# ---------------------------------------------------------------------------
# Self-test against Appendix A of docs/protocol.md
# ---------------------------------------------------------------------------

VECTORS = {
    # Appendix A values, hex, copied from docs/protocol.md.
    "CONTENT_AGREEMENT_FINAL": (
        "0a00000272000001ea111111111111111111111111111111110000000a536574746c656d656e740000001d5468652074"
        "72757374207061797320474250203235303030302e30302e000000010000000f497320697420776f726b61626c653f00"
        "0000010000000d457870657274207265706f72740000000a7265706f72742e706466000000000000000a84d89877f0d4"
        "041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f788203a107bff3ce10be1d70dd18e74bc09967e4d6309ba5"
        "0d5f1ddc8664125531b8358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd16625488141f006dcb"
        "ca5e639d50030b8ef00cd2b8a09a6290fd5158178e1f637467fb172b70cb0b5d7dfe23518bdb61d62900a84d35413c99"
        "54409559b3bfcd556f040000000c546865206d65646961746f7200000000012543b92ff1095511476adc8369db6ddc93"
        "3665a11978dda1404ee1066ca9559d675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f75"
        "058fbf7337e67355ba254c5639b843dc715026524ab51d840c90c8dafbc707e815d478ed4928918acabd30e78f2b3051"
        "ca11a6212f2b7ff3e4ab0a0b50e9080000000b412e20436c61696d616e74012222222222222222222222222222222200"
        "000008436c61696d616e7400000000713fb30000000001df0197fdd1bbf0708b857d81dde80dca13b7e0093c5e9f647c"
        "0e57dc450a870332d59ac6600edb690b3831bba2146759575569781187bb0ba5382336307a7b0f0957469e2c3977a333"
        "8c1196381a7e53496131de1f3c6d43dd2e560040d813b6973461a83cf3f09bdf672004948bb73ad5da5c80517c2e1299"
        "72f2c716c2dc0d"
    ),
    "AGREEMENT_HASH": "092d68ee6898521861b3b2cad890c950ae3432a14cbfb9626a026d1f3e280b67",
    "CONTENT_AGREEMENT_SIGNATURE": (
        "09092d68ee6898521861b3b2cad890c950ae3432a14cbfb9626a026d1f3e280b67df0197fdd1bbf0708b857d81dde80d"
        "ca13b7e0093c5e9f647c0e57dc450a870332d59ac6600edb690b3831bba2146759575569781187bb0ba5382336307a7b"
        "0f"
    ),
    "MED_SIGNING": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "MED_DH": "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254",
    "MED_SELFSIG": (
        "88141f006dcbca5e639d50030b8ef00cd2b8a09a6290fd5158178e1f637467fb172b70cb0b5d7dfe23518bdb61d62900"
        "a84d35413c9954409559b3bfcd556f04"
    ),
    "MED_FP": "aaa4cbe92c47a7af3c0bcc84f18d6459998ae1b838e43241da921862c40a02e2",
    "CLA_FP": "4c2badd0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f78388",
    "HEADER_1": (
        "0001111111111111111111111111111111114444444444444444444444444444444400000000000000014c2badd0e00f"
        "b63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f7838800000000000000010000000000000000000000000000"
        "00000000000000000000000000000000000001abababababababababababababababab"
    ),
    "CONTENT_TEXT": "0101000000144d7920626f74746f6d206c696e652069732e2e2e",
    "CONTENT_FORWARD": (
        "0244444444444444444444444444444444cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
        "cd02000000195468657920636f756c64206d6f7665206f6e2070726963652e00"
    ),
    "CONTENT_RECEIPT": (
        "03cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd333333333333333333333333333333"
        "3301000000026869"
    ),
    "CONTENT_CONSENT": "04cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
    "CONTENT_SYS_ADMITTED": "05014c2badd0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f78388",
    "CONTENT_SYS_JOINT_OPENED": "0503",
    "CONTENT_SYS_PHASE": "050503",
    "LABEL_KEY_PARTY": "84ac0b4cea66cf873ef90ec268b1f31375796e266ce9b4041506c72be4c49bf9",
    "LABEL_PARTY": (
        "000000000000000199999999999999999999999999999999000000500f6b31eb918866fcfec7ac0d6c0cb0ab07d78039"
        "f8be90b051c6e20038fc7dfe2179fb8c2fc59378e826196c2ddd9e67db974f11c3333cd28030ef4408cf17f194d7ddd4"
        "afd936d6be5f701e89d55ba1"
    ),
    "LABEL_MED": (
        "00000000000000019a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a0000005010ddd361c937fe1d5f5fdda4e9c1f110139cd0f7"
        "52914c6f38c9091dcb330440047641e7ad80d505c8d59e43c3008c767676e5af8d1a4a2509a3123d7e3c48a816406835"
        "c23f325c2c290a5448b9e53a"
    ),
    "LABEL_CLA": (
        "00000000000000019b9b9b9b9b9b9b9b9b9b9b9b9b9b9b9b00000050f65b95e55b7cf580a79bb89392c052ca4bf30ef2"
        "6f6884bf99db58ec3131d5e731b5d28c73db32537ecd11e2ed98aec0a9d66ca69c643b07decb24259a5d8b280a18966c"
        "83756424f010eb2d7d608fba"
    ),
    "SIGNED_ROSTER": (
        "0000037e1111111111111111111111111111111100000000000000010000000000000000000000000000000000000000"
        "000000000000000000000000010000000122222222222222222222222222222222000000000000000199999999999999"
        "999999999999999999000000500f6b31eb918866fcfec7ac0d6c0cb0ab07d78039f8be90b051c6e20038fc7dfe2179fb"
        "8c2fc59378e826196c2ddd9e67db974f11c3333cd28030ef4408cf17f194d7ddd4afd936d6be5f701e89d55ba1000000"
        "000203a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8358072d6365880d1aeea329adf91"
        "21383851ed21a28e3b75e965d0d2cd16625488141f006dcbca5e639d50030b8ef00cd2b8a09a6290fd5158178e1f6374"
        "67fb172b70cb0b5d7dfe23518bdb61d62900a84d35413c9954409559b3bfcd556f04010000000000000000019a9a9a9a"
        "9a9a9a9a9a9a9a9a9a9a9a9a0000005010ddd361c937fe1d5f5fdda4e9c1f110139cd0f752914c6f38c9091dcb330440"
        "047641e7ad80d505c8d59e43c3008c767676e5af8d1a4a2509a3123d7e3c48a816406835c23f325c2c290a5448b9e53a"
        "2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d675dd574ed7789310b3d2e7681f3790b"
        "466c773b1521fecf36577958371ea52f75058fbf7337e67355ba254c5639b843dc715026524ab51d840c90c8dafbc707"
        "e815d478ed4928918acabd30e78f2b3051ca11a6212f2b7ff3e4ab0a0b50e90803012222222222222222222222222222"
        "222200000000000000019b9b9b9b9b9b9b9b9b9b9b9b9b9b9b9b00000050f65b95e55b7cf580a79bb89392c052ca4bf3"
        "0ef26f6884bf99db58ec3131d5e731b5d28c73db32537ecd11e2ed98aec0a9d66ca69c643b07decb24259a5d8b280a18"
        "966c83756424f010eb2d7d608fba00000002333333333333333333333333333333330201000000000000000100000002"
        "4c2badd0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f78388aaa4cbe92c47a7af3c0bcc84f18d6459"
        "998ae1b838e43241da921862c40a02e24444444444444444444444444444444401222222222222222222222222222222"
        "22010000000000000001000000024c2badd0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f78388aaa4"
        "cbe92c47a7af3c0bcc84f18d6459998ae1b838e43241da921862c40a02e20000000019dbd9e2d64831deacf7bbd316f9"
        "fffe14eef3bbc7be08a015b4a21420017280accef97eaaee9124dcef7c736d0d07679e84719d6f6b88b3799cfbd949ad"
        "f609"
    ),
    "ROSTER_HASH": "8185ff94324fc6cbcdf8de6bed53f4eb6d28bca4e7d9c20af9e535156102f187",
    "SIGNED_BUNDLE": (
        "00000134111111111111111111111111111111114444444444444444444444444444444400000000000000018185ff94"
        "324fc6cbcdf8de6bed53f4eb6d28bca4e7d9c20af9e535156102f187000000024c2badd0e00fb63a7881e2544dcf8c3f"
        "8a56e1cc83ff3e0fab1c89a1c0f78388ff759b0f75b5e55194149767a01bd8ace2150482ab59a3533fa0ec913d184634"
        "00000030fc4801da40ae898838ac7edeaed4249ef80090d4813fb25c3210838d6a295545dcae15e933bfe0ed9f08d4e6"
        "d0cc2a49aaa4cbe92c47a7af3c0bcc84f18d6459998ae1b838e43241da921862c40a02e225d0b774b63db07b16e17eef"
        "615e2a7136e70d325b46d2fe914bdf3dbab9cc7b00000030e3b2db0531367c7493141990468696d3ef56bf32af8d8a94"
        "4d75a5a149c7c906cc6e669f571e678f244f3d6b85ad4b37f62d932a4e75b00021789ae5d444ff40fec1d9cc68f309d8"
        "c507024be92d77eeb1b5266b98091ff0e64cc593dd0d6a9b179e5236376f715a97ac51e2a9095b07"
    ),
    "MSG_KEY_1": "5d1d0e09272d5d2966f4700602310ddc5fc6e3daa67f7f8e47a9e6981fb9cf53",
    "CT_1": (
        "c31836cbfeecb52a52a77680af68344ce443d098ade815b45329e972ed8aaf6b430482281ac7bd07775d8933560db771"
        "ebfda517053fa7322613c45b839e6a7d818604f8cd5c814d7a8a81354a13c07a2ca7cbf6f262edd9ac825219cb282af6"
        "aa22c8f731f6036842d5317dcf342a111f53a802a340b588cd4b46e711aaa073b73fe6c79f66a34d03a130f3f4109843"
        "b92b85bfcaab67951d08e8c8016a93239d96c7e29f8693973be9894936c839bebb4788ec3f694b6e4945e99a1e24714b"
        "9103b69121e1ca3e25a82acf34ae26f3838e658597d51c7b4cc0b0f2b9b24951a24824b77310d80a35fb28e3c98c6067"
        "689b1a0668e08e88531f68ea751eb9ccb7b32472d7c06417a984dec43c564aac"
    ),
    "SIG_1": (
        "f4e54519f8dd3124b37334bfb411ffb517faeb10f97a9f9ee9ad0ff907b5a86de890e5c40e30d72d6663c57ce6e79701"
        "67e5917777ff905475189c3432476609"
    ),
    "ENVELOPE_1": (
        "000000830001111111111111111111111111111111114444444444444444444444444444444400000000000000014c2b"
        "add0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f78388000000000000000100000000000000000000"
        "0000000000000000000000000000000000000000000001abababababababababababababababab00000110c31836cbfe"
        "ecb52a52a77680af68344ce443d098ade815b45329e972ed8aaf6b430482281ac7bd07775d8933560db771ebfda51705"
        "3fa7322613c45b839e6a7d818604f8cd5c814d7a8a81354a13c07a2ca7cbf6f262edd9ac825219cb282af6aa22c8f731"
        "f6036842d5317dcf342a111f53a802a340b588cd4b46e711aaa073b73fe6c79f66a34d03a130f3f4109843b92b85bfca"
        "ab67951d08e8c8016a93239d96c7e29f8693973be9894936c839bebb4788ec3f694b6e4945e99a1e24714b9103b69121"
        "e1ca3e25a82acf34ae26f3838e658597d51c7b4cc0b0f2b9b24951a24824b77310d80a35fb28e3c98c6067689b1a0668"
        "e08e88531f68ea751eb9ccb7b32472d7c06417a984dec43c564aacf4e54519f8dd3124b37334bfb411ffb517faeb10f9"
        "7a9f9ee9ad0ff907b5a86de890e5c40e30d72d6663c57ce6e7970167e5917777ff905475189c3432476609"
    ),
    "ENV_HASH_1": "2d07154e1ca62b6d0808e8b2267206cd74c994a97c4518ba667796b966c486f5",
    "MSG_KEY_2": "9df72132d955b4bd02036d629db692309089849b0746ea9fdf5f6834f4ed5aed",
    "ENVELOPE_2": (
        "000000830001111111111111111111111111111111114444444444444444444444444444444400000000000000014c2b"
        "add0e00fb63a7881e2544dcf8c3f8a56e1cc83ff3e0fab1c89a1c0f7838800000000000000022d07154e1ca62b6d0808"
        "e8b2267206cd74c994a97c4518ba667796b966c486f501acacacacacacacacacacacacacacacac000001107f5185b45f"
        "3d9633bdd9b5e89bcc799119fb6219060f539381bf88627b2649e1816facb415a0d67c14d44830cbe4b2f98a1115d175"
        "4b46d83b993fb0519806477e1ddc2d831733656b3d8dd53f5656adb00454026c4dfe735dabbe504700e406d77585290c"
        "9afd90ea2577246cae5a81fd856217597e5ef034878411aa687cafe37edcf3da30ea8f3ad0ddb18fbbb55c269765707d"
        "41af3a084b6d0b92eac4345af8bf72afdc631445a744952a5cde477f6a54db2c92b20aefca294dabbeb1f97c19e43ec3"
        "01e62e1b144778a252b8a754036bdb1af0c13e55f1fc4a168d03729e88397d2275993771763bbb8b4e99592b845c21b0"
        "e16ffe3569146041d13410c3cc8c4899a1ac729737d13a68176869d4605f7863b17b1de7caded5726866b1a2141fabca"
        "2af569c0fb346955af1915de2c9db3512c918621f8eaa1b1fcda3439582108de33accf27fa37df7fa73703"
    ),
    "ENV_HASH_2": "b3d7de28817d0c952892cc8f634c798116cbcf99b75fd7f57ee9c90ef9923d60",
    "CANON_INVITE": (
        "000000137773733a2f2f72656c61792e6578616d706c653ce04bc972d2098b27e6a511d0cca5d6fa93cb4b811bfa5c91"
        "ad413cbd8921cc1111111111111111111111111111111155555555555555555555555555555555666666666666666666"
        "6666666666666666666666666666666666666666666666aaa4cbe92c47a7af3c0bcc84f18d6459998ae1b838e43241da"
        "921862c40a02e20000000077359400"
    ),
    "RELAY_FP": "3ce04bc972d2098b27e6a511d0cca5d6fa93cb4b811bfa5c91ad413cbd8921cc",
    "AUTH_INPUT": (
        "0e6361756375732f76312f61757468cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc3c"
        "e04bc972d2098b27e6a511d0cca5d6fa93cb4b811bfa5c91ad413cbd8921cc000000137773733a2f2f72656c61792e65"
        "78616d706c65"
    ),
    "TOKEN": "af6da23504addf3d53d53edba7414d7c480b7e7cc77887b513d47f74f052d8ed",
    "TOKEN_HASH": "e7fc10034596f30d23c0fb49663ee7189b727a54ba7d5e6a8e2010dcdff4aa15",
    "JOIN_MAC_KEY": "ba93312b38c0e57cd970857d8106da62f840ef40af5058a76102010735a2a8e2",
    "JOIN_PROOF": "264c332f4e31ccf9c0956cc6c74345e8b014ee1485bdb5dc106fc541ff9096c4",
    "JOIN_REQUEST": (
        "11111111111111111111111111111111555555555555555555555555555555552543b92ff1095511476adc8369db6ddc"
        "933665a11978dda1404ee1066ca9559d675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
        "75058fbf7337e67355ba254c5639b843dc715026524ab51d840c90c8dafbc707e815d478ed4928918acabd30e78f2b30"
        "51ca11a6212f2b7ff3e4ab0a0b50e908264c332f4e31ccf9c0956cc6c74345e8b014ee1485bdb5dc106fc541ff9096c4"
    ),
    "AUTH_SIG": (
        "10545a1b183721afc86dba296e5505ce4d6a18c92588223eb706d92a528fed3f0d534c731abb024cf5a03390710e5e76"
        "d66947a085bd504513c0611423b56509"
    ),
}


def self_test(hpke_vectors: Optional[str]) -> None:
    X = {k: bytes.fromhex(v) for k, v in VECTORS.items()}
    checks = 0

    def eq(what: str, got, want) -> None:
        nonlocal checks
        if got != want:
            raise Fatal(f"self-test: {what}: got {got!r}, want {want!r}")
        checks += 1

    # 4.2
    w = (Writer().u16(0x0102).u64(3).boolean(True).bytes(b"ab").string("c")
         .option(7, lambda w, x: w.u8(x)).option(None, None).list([1, 2], lambda w, x: w.u8(x)))
    eq("4.2 encoding", w.done().hex(), "01020000000000000003010000000261620000000163010700000000020102")
    # 1.6 base64url strictness
    eq("b64 AA", b64d("AA"), b"\x00")
    for bad in ("AB", "AA==", "A+", "A"):
        try:
            b64d(bad)
            raise Fatal(f"self-test: base64url {bad!r} accepted")
        except ProtocolError:
            checks += 1
    # 12.9 error codes: unavailable in words, an unknown code still a refusal
    eq("12.9 unavailable", refusal("post", "unavailable", "store unavailable"),
       "the relay can't save anything just now, so post was not done; nothing was lost: try again in a minute")
    eq("12.9 unknown code", refusal("post", "from_the_future", "no"),
       "the relay refused post: from_the_future: no")
    # 12.1 integers
    eq("12.1 2^53 - 1", json_integers_ok({"id": 2**53 - 1, "rooms": [{"after": 0}]}), True)
    eq("12.1 2^53", json_integers_ok({"rooms": [{"after": 2**53}]}), False)
    eq("12.1 1.0", json_integers_ok({"id": 1.0}), False)
    # A.3 identities
    med = DeviceKeys(bytes(range(0x00, 0x20)), bytes(range(0x20, 0x40)))
    cla = DeviceKeys(bytes(range(0x40, 0x60)), bytes(range(0x60, 0x80)))
    eq("A.3 mediator signing key", med.public.signing_key, X["MED_SIGNING"])
    eq("A.3 mediator DH key", med.public.dh_key, X["MED_DH"])
    eq("A.3 mediator self-signature", med.public.self_signature, X["MED_SELFSIG"])
    eq("A.3 mediator fingerprint", med.fingerprint, X["MED_FP"])
    eq("A.3 mediator fingerprint b64", b64e(med.fingerprint), "qqTL6SxHp688C8yE8Y1kWZmK4bg45DJB2pIYYsQKAuI")
    eq("A.3 mediator safety code", safety_code(med.fingerprint), "67244 57259 51268 05144 67482 51114")
    eq("A.3 claimant fingerprint", cla.fingerprint, X["CLA_FP"])
    eq("A.3 claimant safety code", safety_code(cla.fingerprint), "25984 94689 94444 89356 73099 63575")
    eq("A.3 identity round trip", decode_exact(cla.public.encode(), PublicIdentity.read), cla.public)
    tampered = bytearray(cla.public.encode())
    tampered[100] ^= 1
    try:
        decode_exact(bytes(tampered), PublicIdentity.read)
        raise Fatal("self-test: a bad self-signature decoded")
    except ProtocolError as e:
        eq("5.2 bad self-signature", e.code, "malformed")
    # A.1
    eq("A.1 envelope prefix", prefix(L_ENVELOPE).hex(), "126361756375732f76312f656e76656c6f7065")
    # A.4 header
    session, party, joint, private = b"\x11" * 16, b"\x22" * 16, b"\x33" * 16, b"\x44" * 16
    h1 = Header(session, private, 1, cla.fingerprint, 1, ZERO32, CLASS_PARTY, b"\xab" * 16)
    eq("A.4 header", h1.encode(), X["HEADER_1"])
    # A.5 contents
    eq("A.5 text", text_content(1, "My bottom line is..."), X["CONTENT_TEXT"])
    for name in ("CONTENT_TEXT", "CONTENT_FORWARD", "CONTENT_RECEIPT", "CONTENT_CONSENT",
                 "CONTENT_SYS_ADMITTED", "CONTENT_SYS_JOINT_OPENED", "CONTENT_SYS_PHASE"):
        decode_exact(X[name], read_content)
        checks += 1
    # 9.1, 9.2: Agree (7) with its Step, System(PartyRejoined) (7); unknown tags refused
    eq("9.2 agree", decode_exact(bytes([7, 2]), read_content), {"type": CT_AGREE, "step": 2})
    eq("9.2 rejoined", decode_exact(bytes([5, 7]), read_content)["event"], 7)
    for bad in (bytes([7, 3]), bytes([8]), bytes([5, 8]), bytes([7, 1, 0])):
        try:
            decode_exact(bad, read_content)
            raise Fatal(f"self-test: content {bad.hex()} decoded")
        except ProtocolError as e:
            eq("4.1 bad content", e.code, "malformed")
    # A.5 agreement (9.4): decoded, hashed, verified; its attachment's hash is covered
    final = decode_exact(X["CONTENT_AGREEMENT_FINAL"], read_content)["signed"]
    verify_signed_agreement(final)
    eq("A.5 agreement hash", final["agreement"]["hash"], X["AGREEMENT_HASH"])
    eq("A.5 attachment", attachments_json(final["agreement"]),
       [{"title": "Expert report", "name": "report.pdf", "size": 10,
         "sha256": hashlib.sha256(b"0123456789").hexdigest()}])
    eq("A.5 agreement signature",
       Writer().u8(CT_AGREEMENT_SIGNATURE).fixed(final["agreement"]["hash"]).fixed(final["signatures"][0]).done(),
       X["CONTENT_AGREEMENT_SIGNATURE"])
    changed = bytearray(X["CONTENT_AGREEMENT_FINAL"])
    changed[138] ^= 1
    try:
        verify_signed_agreement(decode_exact(bytes(changed), read_content)["signed"])
        raise Fatal("self-test: an agreement with a changed attachment hash verified")
    except ProtocolError as e:
        eq("9.4 changed attachment", e.code, "bad_signature")
    for name in ("../report.pdf", "a/b", "..", "", "a\nb"):
        try:
            decode_exact(Writer().string("Expert report").string(name).u64(10).fixed(ZERO32).done(), read_attachment)
            raise Fatal(f"self-test: attachment name {name!r} decoded")
        except ProtocolError as e:
            eq("9.6 attachment name", e.code, "malformed")
    fwd = decode_exact(X["CONTENT_FORWARD"], read_content)
    eq("A.5 forward", (fwd["mode"], fwd["text"], fwd["author_consented"]), (2, "They could move on price.", False))
    # A.7 roster: decode, verify, accept
    view = SessionView(session, med.fingerprint, cla)
    roster = view.accept_roster(X["SIGNED_ROSTER"])
    eq("A.7 roster hash", view.held_hash, X["ROSTER_HASH"])
    eq("A.7 roster version", roster.version, 1)
    eq("A.7 joint members", roster.joint().members, (cla.fingerprint, med.fingerprint))
    eq("A.7 no chain heads", roster.heads, [])
    eq("7.6 same roster again, silent", view.accept_roster(X["SIGNED_ROSTER"]), None)
    other = SessionView(session, cla.fingerprint, cla)
    try:
        other.accept_roster(X["SIGNED_ROSTER"])
        raise Fatal("self-test: unpinned mediator accepted")
    except ProtocolError as e:
        eq("7.5 unpinned", e.code, "unpinned_mediator")
    bad = bytearray(X["SIGNED_ROSTER"])
    bad[-1] ^= 1
    try:
        SessionView(session, med.fingerprint, cla).accept_roster(bytes(bad))
        raise Fatal("self-test: a bad roster signature was accepted")
    except ProtocolError as e:
        eq("7.5 bad signature", e.code, "bad_signature")
    # 8.5: a bundle is sealed to exactly the room's members, once each.
    def bundle(recipients: list) -> bytes:
        def entry(w: Writer, fp: bytes) -> None:
            enc, ct = hpke_seal(cla.public.dh_key, room_key_info(session, private, 1, fp, X["ROSTER_HASH"]),
                                b"\x88" * 32)
            w.fixed(fp).fixed(enc).bytes(ct)
        body = Writer().fixed(session).fixed(private).u64(1).fixed(X["ROSTER_HASH"]).list(recipients, entry).done()
        return Writer().bytes(body).fixed(med.sign(L_KEY_BUNDLE, body)).done()
    for recipients in ([cla.fingerprint], [cla.fingerprint, cla.fingerprint]):
        try:
            view.open_key_bundle(bundle(recipients))
            raise Fatal("self-test: a bundle not sealed to every member was opened")
        except ProtocolError as e:
            eq("8.5 bundle coverage", e.code, "bundle_mismatch")
    # A.8 key bundle, opened by the claimant
    eq("A.8 bundle", view.open_key_bundle(X["SIGNED_BUNDLE"]), (private, 1))
    eq("A.8 secret", view.keys[(private, 1)], b"\x88" * 32)
    # A.6 labels need the joint key, which A.8 does not deliver: install it.
    view.keys[(joint, 1)] = b"\x77" * 32
    eq("A.6 party label", view.open_label(roster.parties[0].label, party), "Claimant")
    eq("A.6 mediator name", view.open_label(roster.member(med.fingerprint).name, med.fingerprint), "The mediator")
    eq("A.6 claimant name", view.open_label(roster.member(cla.fingerprint).name, cla.fingerprint), "A. Claimant")
    eq("A.6 label key", label_key(b"\x77" * 32, session, joint, 1, party, b"\x99" * 16), X["LABEL_KEY_PARTY"])
    eq("A.6 label sizes", {len(p.label.ciphertext) for p in roster.parties}
       | {len(m.name.ciphertext) for m in roster.members}, {LABEL_MIN + 16})
    dirty = bytearray(pad(b"Claimant", LABEL_MIN))
    dirty[-1] = 1
    forged = SealedLabel(1, b"\x99" * 16, seal_once(X["LABEL_KEY_PARTY"], b"", bytes(dirty)))
    try:
        view.open_label(forged, party)
        raise Fatal("self-test: a label with dirty padding opened")
    except ProtocolError as e:
        eq("8.2 label padding", e.code, "malformed")
    # 9.2 padding sizes
    eq("9.2 padded_len", [padded_len(n, CONTENT_MIN) for n in (1, 256, 257, 513, 262141, 262144)],
       [256, 256, 272, 544, 262144, 262144])
    eq("A.9 padded plaintext", pad(X["CONTENT_TEXT"], CONTENT_MIN),
       bytes.fromhex("0000001a") + X["CONTENT_TEXT"] + bytes(226))
    # A.9 envelopes: sealing reproduces them byte for byte (Ed25519 is deterministic)
    env1 = seal_envelope(cla, b"\x88" * 32, h1, text_content(1, "My bottom line is..."))
    eq("A.9 message key 1", expand(b"\x88" * 32, L_MESSAGE_KEY, h1.encode()), X["MSG_KEY_1"])
    eq("A.9 ciphertext 1", env1.ciphertext, X["CT_1"])
    eq("A.9 signature 1", env1.signature, X["SIG_1"])
    eq("A.9 envelope 1", env1.encode(), X["ENVELOPE_1"])
    eq("A.9 hash 1", env1.hash, X["ENV_HASH_1"])
    h2 = Header(session, private, 1, cla.fingerprint, 2, X["ENV_HASH_1"], CLASS_PARTY, b"\xac" * 16)
    eq("A.9 message key 2", expand(b"\x88" * 32, L_MESSAGE_KEY, h2.encode()), X["MSG_KEY_2"])
    eq("A.9 envelope 2", seal_envelope(cla, b"\x88" * 32, h2, text_content(2, "...but I could move.")).encode(),
       X["ENVELOPE_2"])
    # ... and the mediator's view opens them, in order, and refuses a replay.
    mview = SessionView(session, med.fingerprint, med)
    mview.accept_roster(X["SIGNED_ROSTER"])
    mview.keys[(private, 1)] = b"\x88" * 32
    o2 = mview.open_envelope(X["ENVELOPE_2"])  # out of order: gap 1..=1
    eq("10.6 gap", o2.gap, (1, 1))
    o1 = mview.open_envelope(X["ENVELOPE_1"])
    eq("A.9 open 1", (o1.content["body"], o1.hash, o1.gap), ("My bottom line is...", X["ENV_HASH_1"], None))
    eq("A.9 open 2", (o2.content["body"], o2.hash), ("...but I could move.", X["ENV_HASH_2"]))
    try:
        mview.open_envelope(X["ENVELOPE_1"])
        raise Fatal("self-test: replay accepted")
    except ProtocolError as e:
        eq("10.6 replay", e.code, "replay")
    # 10.5 steps 7 and 8: the header's class, the padding, then the content's type.
    h3 = Header(session, private, 1, cla.fingerprint, 3, X["ENV_HASH_2"], CLASS_PARTY, b"\xad" * 16)

    def sealed_by_hand(h: Header, pt: bytes) -> bytes:
        hb = h.encode()
        env = Envelope(hb, h, seal_once(expand(b"\x88" * 32, L_MESSAGE_KEY, hb), hb, pt), b"")
        env.signature = cla.sign(L_ENVELOPE, env.signed_body)
        return env.encode()

    text3 = text_content(2, "three")
    dirty = bytearray(pad(text3, CONTENT_MIN))
    dirty[-1] = 1
    for what, data, code in (
        ("a mediator's class from a party member", sealed_by_hand(
            replace(h3, content_class=CLASS_MEDIATOR), pad(text3, CONTENT_MIN)),
         "content_type_mismatch"),
        ("padding not zero", sealed_by_hand(h3, bytes(dirty)), "malformed"),
        ("padding too long", sealed_by_hand(h3, pad(text3, CONTENT_MIN) + bytes(16)), "malformed"),
        ("no padding", sealed_by_hand(h3, text3), "malformed"),
        ("a forward from a party member", sealed_by_hand(h3, pad(X["CONTENT_FORWARD"], CONTENT_MIN)),
         "not_permitted"),
    ):
        try:
            mview.open_envelope(data)
            raise Fatal(f"self-test: {what} opened")
        except ProtocolError as e:
            eq(f"10.5 {what}", e.code, code)
    eq("10.5 seq 3 still open", mview.open_envelope(sealed_by_hand(h3, pad(text3, CONTENT_MIN))).content["body"],
       "three")
    # 7.6: version 2 of the A.7 roster, the private room at `epoch`, with `heads`.
    v1_body = read_signed(X["SIGNED_ROSTER"], Roster.read).body

    def version_2(epoch: int, heads: list) -> bytes:
        body = bytearray(v1_body[:-4])  # less the empty heads
        body[16:24], body[24:56] = struct.pack(">Q", 2), X["ROSTER_HASH"]
        at = body.index(private + bytes([KIND_PRIVATE]) + party + b"\x01") + 34  # the private room's epoch
        body[at:at + 8] = struct.pack(">Q", epoch)
        body += Writer().list(heads, lambda w, x: w.fixed(x.room).fixed(x.member).u64(x.seq).fixed(x.hash)).done()
        return Writer().bytes(bytes(body)).fixed(med.sign(L_ROSTER, bytes(body))).done()

    head_2 = ChainHead(private, cla.fingerprint, 2, X["ENV_HASH_2"])
    for epoch, heads, why in ((1, [head_2], "a head for an epoch not ended"), (3, [], "an epoch moving by two"),
                              (2, [head_2, head_2], "heads not ascending")):
        try:
            mview.accept_roster(version_2(epoch, heads))
            raise Fatal(f"self-test: a roster with {why} accepted")
        except ProtocolError as e:
            eq(f"7.6 {why}", e.code, "invalid_roster")
    v2 = version_2(2, [head_2])
    eq("7.6 version 2", mview.accept_roster(v2).version, 2)
    eq("7.6 version 1 again, silent", mview.accept_roster(X["SIGNED_ROSTER"]), None)
    # 10.5 step 6: the ended epoch 1 takes nothing past the claimant's head (seq 2).
    for seq, previous, code in ((3, X["ENV_HASH_2"], "after_epoch_ended"), (2, X["ENV_HASH_1"], "fork")):
        late = seal_envelope(cla, b"\x88" * 32, Header(session, private, 1, cla.fingerprint, seq, previous, CLASS_PARTY,
                                                       b"\xad" * 16), text_content(1, "late"))
        try:
            mview.open_envelope(late.encode())
            raise Fatal(f"self-test: {code} accepted")
        except ProtocolError as e:
            eq(f"10.5 {code}", e.code, code)
    # 10.6: a member whose first epoch is 2 follows the claimant's chain from the head.
    jview = SessionView(session, med.fingerprint, med)
    jview.accept_roster(X["SIGNED_ROSTER"])
    jview.accept_roster(v2)
    jview.keys[(private, 2)] = b"\x89" * 32
    for previous, want in ((X["ENV_HASH_1"], "chain_broken"), (X["ENV_HASH_2"], None)):
        env3 = seal_envelope(cla, b"\x89" * 32, Header(session, private, 2, cla.fingerprint, 3, previous, CLASS_PARTY,
                                                       b"\xae" * 16), text_content(1, "next"))
        try:
            eq("10.6 from the head, no gap", jview.open_envelope(env3.encode()).gap, want)
        except ProtocolError as e:
            eq("10.6 from the head, linked", e.code, want)
    # A.10 invite
    link = (
        "caucus:invite:v1:AAAAE3dzczovL3JlbGF5LmV4YW1wbGU84EvJctIJiyfmpRHQzKXW-pPLS4Eb-lyRrUE8vYkhzBERERERERERERERERERERFVVVVVVVVVVVVVVVVVVVVVZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmaqpMvpLEenrzwLzITxjWRZmYrhuDjkMkHakhhixAoC4gAAAAB3NZQA"
    )
    inv = Invite.from_link("  " + link + "\n")
    eq("A.10 invite", inv.encode(), X["CANON_INVITE"])
    relay = DeviceKeys(bytes(range(0x80, 0xA0)), bytes(range(0xA0, 0xC0)))
    eq("A.12 relay fingerprint", relay.fingerprint, X["RELAY_FP"])
    eq("A.10 relay", (inv.relay, inv.relay_key, inv.expires_at, inv.mediator),
       ("wss://relay.example", relay.fingerprint, 2000000000, med.fingerprint))
    eq("A.10 link", LINK_PREFIX + b64e(inv.encode()), link)
    eq("A.10 token", inv.admission_token(), X["TOKEN"])
    eq("A.10 token hash", token_hash(inv.admission_token()), X["TOKEN_HASH"])
    eq("A.10 join MAC key", inv.join_mac_key(), X["JOIN_MAC_KEY"])
    eq("A.10 join request", inv.join_request(cla.public), X["JOIN_REQUEST"])
    eq("11.3 proof verifies", mac_verify(inv.join_mac_key(), L_JOIN_PROOF, session + inv.id + cla.public.encode(),
                                         X["JOIN_PROOF"]), True)
    # A.11 auth
    body = auth_body(b"\xcc" * 32, relay.fingerprint, "WSS://Relay.Example:443/")
    eq("A.11 auth input", prefix(L_AUTH) + body, X["AUTH_INPUT"])
    eq("A.11 auth signature", med.sign(L_AUTH, body), X["AUTH_SIG"])
    # 2.1, 5.2: small-order keys refused at decoding (Appendix A.3's table).
    for key in ("0100000000000000000000000000000000000000000000000000000000000000",
                "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
                "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"):
        eq("2.1 refused key " + key[:8], ed25519_key_refused(bytes.fromhex(key)), True)
    eq("2.1 accepted key", ed25519_key_refused(med.public.signing_key), False)
    eq("5.2 small-order DH key", x25519_small_order(bytes(32)), True)
    # A.13 a document (9.6)
    a13_file = b"Position statement of the claimant, 3 March.\n"
    eq("A.13 file", a13_file.hex(), "506f736974696f6e2073746174656d656e74206f662074686520636c61696d61"
                                    "6e742c2033204d617263682e0a")
    eq("A.13 file size", len(a13_file), 45)
    a13_hash = hashlib.sha256(a13_file).digest()
    eq("A.13 hash", a13_hash.hex(), "5898c2a708cbac118b1407350d5f7993310c9728195d00094d9dc942715a49cd")
    a13_key = b"\xc0" * 16 + b"\xc1" * 16
    eq("A.13 payload key", payload_key(a13_key).hex(),
       "4ddf196aa25465dff3bb423cbe20c22c0ee90b77e939ee0b4d13772160abe95b")
    eq("A.13 padded_len(45, 65536)", doc_layout(45), (65536, 1))
    eq("A.13 nonce", chunk_nonce(0, True).hex(), "000000000000000000000001")
    a13_chunks = seal_document(a13_file, a13_key)
    eq("A.13 one chunk", len(a13_chunks), 1)
    c0 = a13_chunks[0]
    eq("A.13 chunk length", len(c0), 65552)
    eq("A.13 chunk start", c0[:64].hex(), "47321611f58940be5e3ac1a00fed045aa2ae034206d31a3724febf9669b588f0"
                                         "33d894919b81193dd9d6a87231071fe5253e0e6bf9efc99e65bc90d078702c7b")
    eq("A.13 chunk tag", c0[-16:].hex(), "9bac8eba96727be807655d2f956e8ce8")
    eq("A.13 chunk SHA-256", hashlib.sha256(c0).hexdigest(),
       "02211beda61e3fd3c422dd5bd63edead04fdc07f00028066643438534e02afbb")
    # The chunk, computed directly as 9.6 writes it (not through seal_document).
    direct = ChaCha20Poly1305(HKDF(algorithm=hashes.SHA256(), length=32, salt=b"\xc1" * 16,
                                   info=b"payload").derive(b"\xc0" * 16))
    eq("A.13 chunk, directly", direct.encrypt(bytes(11) + b"\x01", a13_file + bytes(65536 - 45), b""), c0)
    a13_ref = {"file": b"\xdd" * 16, "key": a13_key, "size": 45, "hash": a13_hash,
               "title": "Position statement", "name": "statement.txt", "media_type": "text/plain"}
    eq("A.13 file id b64", b64e(a13_ref["file"]), "3d3d3d3d3d3d3d3d3d3d3Q")
    a13_canon_ref = bytes.fromhex(
        "ddddddddddddddddddddddddddddddddc0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
        "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1000000000000002d5898c2a708cbac11"
        "8b1407350d5f7993310c9728195d00094d9dc942715a49cd00000012506f7369"
        "74696f6e2073746174656d656e740000000d73746174656d656e742e74787400"
        "00000a746578742f706c61696e")
    eq("A.13 canon(DocumentRef)", write_document_ref(Writer(), a13_ref).done(), a13_canon_ref)
    eq("A.13 canon(DocumentRef) length", len(a13_canon_ref), 141)
    eq("A.13 DocumentRef decoded", decode_exact(a13_canon_ref, read_document_ref), a13_ref)
    a13_content = bytes.fromhex(
        "0d01ddddddddddddddddddddddddddddddddc0c0c0c0c0c0c0c0c0c0c0c0c0c0"
        "c0c0c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1000000000000002d5898c2a708cb"
        "ac118b1407350d5f7993310c9728195d00094d9dc942715a49cd00000012506f"
        "736974696f6e2073746174656d656e740000000d73746174656d656e742e7478"
        "740000000a746578742f706c61696e")
    eq("A.13 canon(Content::Document)", document_content(SHARING["MediatorOnly"], a13_ref), a13_content)
    eq("A.13 content length", len(a13_content), 143)
    eq("A.13 content padded", len(pad(a13_content, CONTENT_MIN)), 256)
    eq("A.13 content decoded", decode_exact(a13_content, read_content),
       {"type": CT_DOCUMENT, "sharing": 1, "document": a13_ref})
    opener = DocumentOpener(a13_ref)
    opener.open_chunk(0, c0)
    eq("A.13 opened", opener.finish(), a13_file)
    # 9.6 layout examples
    eq("9.6 65537 bytes", (doc_layout(65537), doc_chunk_len(67584, 1)), ((67584, 2), 2064))  # the second chunk: 2048 + 16
    eq("9.6 1 MB", doc_layout(1000000)[0], 1015808)
    eq("9.6 50 MiB", doc_layout(MAX_DOCUMENT_SIZE), (MAX_DOCUMENT_SIZE, 800))
    # 9.6 opening refusals: another index, the final flag off, a cut chunk,
    # dirty padding, another file's hash.
    multi = bytes(range(256)) * 400  # 102400 bytes: 2 chunks
    mref = {**a13_ref, "size": len(multi), "hash": hashlib.sha256(multi).digest()}
    mchunks = seal_document(multi, a13_key)
    eq("9.6 two chunks", [len(x) for x in mchunks], [65552, doc_layout(len(multi))[0] - 65536 + 16])
    o = DocumentOpener(mref)
    for x in mchunks:
        o.open_chunk(len(o.parts), x)
    eq("9.6 two chunks opened", o.finish(), multi)
    for what, i, chunk, ref, code in (
        ("the second chunk at index 0", 0, mchunks[1], mref, "invalid_document"),
        ("a chunk cut short", 0, mchunks[0][:-1], mref, "invalid_document"),
        ("the final chunk as the first", 0, a13_chunks[0], mref, "decrypt_failed"),
        ("a chunk under another key", 0, seal_document(multi, bytes(32))[0], mref, "decrypt_failed"),
        ("dirty padding", 0, seal_document(a13_file + b"\x01", a13_key)[0], a13_ref, "invalid_document"),
    ):
        try:
            DocumentOpener(ref).open_chunk(i, chunk)
            raise Fatal(f"self-test: {what} opened")
        except ProtocolError as e:
            eq(f"9.6 {what}", e.code, code)
    try:
        o = DocumentOpener({**a13_ref, "hash": ZERO32})
        o.open_chunk(0, c0)
        o.finish()
        raise Fatal("self-test: a document with another hash opened")
    except ProtocolError as e:
        eq("9.6 another hash", e.code, "invalid_document")
    for bad in ({"name": ".."}, {"name": "a/b"}, {"title": " "}, {"media_type": "text"},
                {"media_type": "text/ plain"}, {"size": MAX_DOCUMENT_SIZE + 1}):
        try:
            decode_exact(write_document_ref(Writer(), {**a13_ref, **bad}).done(), read_document_ref)
            raise Fatal(f"self-test: DocumentRef with {bad} decoded")
        except ProtocolError as e:
            eq(f"9.6 DocumentRef {bad}", e.code, "malformed")
    # 2.4 HPKE round trip and low-order refusal
    info = room_key_info(session, private, 1, cla.fingerprint, X["ROSTER_HASH"])
    enc, ct = hpke_seal(cla.public.dh_key, info, b"\x5a" * 32)
    eq("2.4 HPKE round trip", hpke_open(cla.x_secret, enc, info, ct), b"\x5a" * 32)
    try:
        hpke_open(cla.x_secret, bytes(32), info, ct)
        raise Fatal("self-test: low-order enc accepted")
    except ProtocolError as e:
        eq("2.4 low order", e.code, "low_order_point")
    if hpke_vectors:
        with open(hpke_vectors) as f:
            for vec in json.load(f):
                if int(vec["mode"]) != 0:
                    continue
                g = {k: bytes.fromhex(vec[k]) for k in ("skRm", "enc", "info", "skEm", "pkRm")}
                e0 = vec["encryptions"][0]
                pt = hpke_open(g["skRm"], g["enc"], g["info"], bytes.fromhex(e0["ct"]), bytes.fromhex(e0["aad"]))
                eq("RFC 9180 base-mode open", pt, bytes.fromhex(e0["pt"]))
                enc, ct = hpke_seal(g["pkRm"], g["info"], bytes.fromhex(e0["pt"]), g["skEm"], bytes.fromhex(e0["aad"]))
                eq("RFC 9180 base-mode seal", (enc, ct), (g["enc"], bytes.fromhex(e0["ct"])))
    emit({"event": "self_test", "ok": True, "checks": checks})


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("relay", nargs="?", default=os.environ.get("CAUCUS_RELAY"),
                   help="relay websocket URL, or '-' for the link's (env CAUCUS_RELAY)")
    p.add_argument("link", nargs="?", default=os.environ.get("CAUCUS_LINK"),
                   help="invite link caucus:invite:v1:... (env CAUCUS_LINK)")
    p.add_argument("text", nargs="?", default=os.environ.get("CAUCUS_TEXT"),
                   help="the message to send (env CAUCUS_TEXT)")
    p.add_argument("--sharing", choices=sorted(SHARING), default="MediatorOnly",
                   help="sharing of the message sent (default MediatorOnly)")
    p.add_argument("--document", default=None, metavar="FILE",
                   help="after the message, add FILE as a document (9.6) in our private room, then wait for "
                        "a document from the mediator there and open it (instead of a text and a forward)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("CAUCUS_TIMEOUT", "30")),
                   help="seconds before giving up (default 30)")
    p.add_argument("--self-test", action="store_true",
                   help="check this implementation against Appendix A of docs/protocol.md and exit")
    p.add_argument("--hpke-vectors", default=None, help="with --self-test: RFC 9180 vector JSON file")
    a = p.parse_args(argv)
    try:
        if a.self_test:
            self_test(a.hpke_vectors)
            return 0
        if not (a.relay and a.link and a.text is not None):
            p.print_usage(sys.stderr)
            log("RELAY_URL, INVITE_LINK and TEXT are required (or CAUCUS_RELAY, CAUCUS_LINK, CAUCUS_TEXT)")
            return 2
        try:
            invite = Invite.from_link(a.link)
        except ProtocolError as e:
            raise Fatal(f"bad invite link: {e}")
        relay = invite.relay if a.relay == "-" else a.relay
        asyncio.run(asyncio.wait_for(run(relay, invite, a.text, SHARING[a.sharing], a.document), a.timeout))
        return 0
    except Fatal as e:
        log(f"FAILED: {e}")
        return 1
    except ProtocolError as e:
        log(f"FAILED: verification failed: {e}")
        return 1
    except (asyncio.TimeoutError, TimeoutError):
        log(f"FAILED: timed out after {a.timeout:g} s")
        return 1
    except (OSError, EOFError) as e:
        log(f"FAILED: connection: {e!r}")
        return 1
    except Exception as e:  # websockets' ConnectionClosed, InvalidStatus, ...
        log(f"FAILED: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
