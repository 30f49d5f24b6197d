"""Luxembourg Smarty decryption: the right key gives the telegram, a wrong one a clear drop.

Our own frames are encrypted with the project's test key (fixtures/README.md); the shared
frames with the keys documented in ../shared/fixtures/README.md. Where the shared README
names the plaintext of a frame, the decrypted bytes are compared with that file.
"""

from __future__ import annotations

import random

import pytest
from conftest import OWN_FIXTURES, SHARED_FIXTURES, require_shared_fixtures

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, DropReason, Frame
from p1daemon.frame.smarty import (
    SMARTY_AUTH_KEY,
    InvalidKeyError,
    SmartyDecryptor,
    encrypt_frame,
    parse_key,
)
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.model import Reading

TEST_KEY = bytes.fromhex("70316461656D6F6E2D746573746B6579")  # b"p1daemon-testkey"
OTHER_KEY = bytes.fromhex("6E6F742D7468652D746573742D6B6579")  # b"not-the-test-key"


def own(name: str) -> bytes:
    return (OWN_FIXTURES / name).read_bytes()


def decrypt_all(
    data: bytes,
    key: bytes,
    auth_key: bytes | None = SMARTY_AUTH_KEY,
    sizes: list[int] | None = None,
) -> list[bytes | Dropped]:
    decryptor = SmartyDecryptor(key, auth_key)
    out: list[bytes | Dropped] = []
    pos = 0
    for size in sizes or []:
        out += decryptor.feed(data[pos : pos + size])
        pos += size
    out += decryptor.feed(data[pos:])
    return out + decryptor.flush()


def readings(data: bytes, **options: object) -> tuple[list[Reading], list[Dropped]]:
    stream = ReadingStream(TelegramDecoder(**options))  # type: ignore[arg-type]
    events = stream.feed(data) + stream.flush()
    return (
        [e for e in events if isinstance(e, Reading)],
        [e for e in events if isinstance(e, Dropped)],
    )


# -- our own frames --------------------------------------------------------------------


def test_own_frames_decrypt_to_the_plaintext_fixture() -> None:
    plain = own("lu/smarty_plaintext.txt")
    first, second = decrypt_all(own("lu/smarty_encrypted.bin"), TEST_KEY)
    assert first == plain
    assert isinstance(second, bytes)
    assert b"0-0:1.0.0(240812143015S)" in second


def test_own_frames_become_readings_equal_to_the_plaintext_ones() -> None:
    decrypted, drops = readings(own("lu/smarty_encrypted.bin"), key=TEST_KEY)
    plain, _ = readings(own("lu/smarty_plaintext.txt"))
    assert drops == []
    assert len(decrypted) == 2
    assert decrypted[0] == plain[0]
    assert decrypted[1].import_.total_kwh == 12345.681
    assert decrypted[1].timestamp is not None and decrypted[1].timestamp.second == 15


def test_frame_header_is_what_the_smarty_specification_lays_out() -> None:
    data = own("lu/smarty_encrypted.bin")
    length = int.from_bytes(data[11:13], "big")
    assert data[0] == 0xDB and data[1] == 0x08 and data[2:10] == b"P1DLUX01"
    assert data[10] == 0x82 and data[13] == 0x30
    assert data[14:18] == (0x102).to_bytes(4, "big")
    # length = security byte + counter + ciphertext + 12-byte tag, and GCM ciphertext is as
    # long as its plaintext (the whole plaintext fixture, final CRLF included).
    assert length == 5 + len(own("lu/smarty_plaintext.txt")) + 12


def test_wrong_key_is_decrypt_failed_never_text() -> None:
    events = decrypt_all(own("lu/smarty_wrong_key.bin"), TEST_KEY)
    assert [e.reason for e in events if isinstance(e, Dropped)] == [DropReason.DECRYPT_FAILED]
    assert not any(isinstance(e, bytes) for e in events)
    found, drops = readings(own("lu/smarty_wrong_key.bin"), key=TEST_KEY)
    assert found == [] and [d.reason for d in drops] == [DropReason.DECRYPT_FAILED]


def test_the_other_key_does_open_the_wrong_key_fixture() -> None:
    # Proves the fixture is a sound frame and the failure above is the key's doing.
    [plain] = decrypt_all(own("lu/smarty_wrong_key.bin"), OTHER_KEY)
    assert isinstance(plain, bytes) and plain.startswith(b"/PDL5")


def test_every_frame_of_a_stream_fails_alone_with_a_wrong_key() -> None:
    data = own("lu/smarty_encrypted.bin")
    events = decrypt_all(data, OTHER_KEY)
    assert [e.reason for e in events if isinstance(e, Dropped)] == [DropReason.DECRYPT_FAILED] * 2
    assert sum(e.size for e in events if isinstance(e, Dropped)) == len(data)


def test_authentication_key_matters() -> None:
    # Frames with AAD do not open without it, and frames without AAD do not open with it.
    assert isinstance(decrypt_all(own("lu/smarty_encrypted.bin"), TEST_KEY, None)[0], Dropped)
    [dropped] = decrypt_all(own("lu/smarty_no_aad.bin"), TEST_KEY)
    assert isinstance(dropped, Dropped) and dropped.reason is DropReason.DECRYPT_FAILED
    found, drops = readings(own("lu/smarty_no_aad.bin"), key=TEST_KEY, auth_key=None)
    assert drops == [] and len(found) == 1
    assert found[0].timestamp is not None and found[0].timestamp.second == 35


def test_frames_split_across_chunks() -> None:
    data = own("lu/smarty_encrypted.bin") + own("lu/smarty_wrong_key.bin")
    whole = decrypt_all(data, TEST_KEY)
    assert decrypt_all(data, TEST_KEY, sizes=[1] * len(data)) == whole
    rng = random.Random(3)
    for _ in range(10):
        sizes = [rng.randint(1, 300) for _ in range(len(data) // 50)]
        assert decrypt_all(data, TEST_KEY, sizes=sizes) == whole


def test_decoder_chunking_gives_the_same_readings() -> None:
    data = own("lu/smarty_encrypted.bin")
    whole, _ = readings(data, key=TEST_KEY)
    stream = ReadingStream(TelegramDecoder(key=TEST_KEY))
    pieces = [e for i in range(len(data)) for e in stream.feed(data[i : i + 1])]
    pieces += stream.flush()
    assert pieces == whole


def test_garbage_around_frames_is_reported_and_skipped() -> None:
    frame = own("lu/smarty_encrypted.bin")
    data = b"\x00junk\xdb\x08" + frame + b"\xdb\xdb\xdb" + frame
    events = decrypt_all(data, TEST_KEY)
    plain = [e for e in events if isinstance(e, bytes)]
    assert len(plain) == 4
    drops = [e for e in events if isinstance(e, Dropped)]
    assert [d.reason for d in drops] == [DropReason.GARBAGE, DropReason.GARBAGE]
    assert [d.size for d in drops] == [7, 3]


def test_stream_ending_inside_a_frame_is_truncated() -> None:
    frame = own("lu/smarty_no_aad.bin")
    events = decrypt_all(frame[:-5], TEST_KEY, None)
    assert [e.reason for e in events if isinstance(e, Dropped)] == [DropReason.TRUNCATED]


def test_a_stray_db_byte_at_the_end_is_garbage_not_a_frame() -> None:
    events = decrypt_all(b"\xdb\x07abc", TEST_KEY)
    assert [e.reason for e in events if isinstance(e, Dropped)] == [DropReason.GARBAGE]


def test_memory_stays_bounded_on_a_flood_of_frame_markers() -> None:
    decryptor = SmartyDecryptor(TEST_KEY, max_size=2048)
    events = decryptor.feed(b"\xdb" * 100_000)
    assert decryptor.buffered <= 2048
    assert all(isinstance(e, Dropped) and e.reason is DropReason.GARBAGE for e in events)


def test_plaintext_of_a_frame_is_framed_and_crc_checked_like_any_telegram() -> None:
    telegram = own("crc/bad_crc.txt")
    frame = encrypt_frame(telegram, TEST_KEY, frame_counter=9)
    found, drops = readings(frame, key=TEST_KEY)
    assert found == [] and [d.reason for d in drops] == [DropReason.CRC_MISMATCH]
    found, _ = readings(frame, key=TEST_KEY, check_crc=False)
    assert len(found) == 1
    assert isinstance(TelegramDecoder(key=TEST_KEY, check_crc=False).feed(frame)[0], Frame)


# -- shared frames ---------------------------------------------------------------------

SHARED_FRAMES = [
    (
        "athombv-node-dsmr-parser/lu_smarty_spec_example_encrypted_with_aad.bin",
        "0123456789abcdef0123456789abcdef",
        "ffeeddccbbaa99887766554433221100",
        "athombv-node-dsmr-parser/dsmr-luxembourgh-spec-example.txt",
    ),
    (
        "athombv-node-dsmr-parser/lu_smarty_spec_example_encrypted_without_aad.bin",
        "0123456789abcdef0123456789abcdef",
        None,
        "athombv-node-dsmr-parser/dsmr-luxembourgh-spec-example.txt",
    ),
    (
        "esphome-libs-dsmr_parser/lu_smarty_format_encrypted_sagemcom_payload.bin",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "00112233445566778899AABBCCDDEEFF",
        "ndokter-dsmr_parser/at_sagemcom_t210_d_r.txt",
    ),
]


@pytest.mark.parametrize(("name", "key", "auth_key", "plaintext"), SHARED_FRAMES)
def test_shared_frames_decrypt_to_their_published_plaintext(
    name: str, key: str, auth_key: str | None, plaintext: str
) -> None:
    require_shared_fixtures()
    ak = None if auth_key is None else parse_key(auth_key)
    [plain] = decrypt_all((SHARED_FIXTURES / name).read_bytes(), parse_key(key), ak)
    assert isinstance(plain, bytes)
    # One of the published frames leaves out the final CRLF of its plaintext.
    assert plain.rstrip(b"\r\n") == (SHARED_FIXTURES / plaintext).read_bytes().rstrip(b"\r\n")


@pytest.mark.parametrize(("name", "key", "auth_key", "plaintext"), SHARED_FRAMES)
def test_shared_frames_follow_the_index(
    name: str, key: str, auth_key: str | None, plaintext: str
) -> None:
    rows = {row.name: row for row in require_shared_fixtures()}
    ak = None if auth_key is None else parse_key(auth_key)
    data = (SHARED_FIXTURES / name).read_bytes()
    found, drops = readings(data, key=parse_key(key), auth_key=ak)
    assert len(found) == rows[name].valid_frames
    if not found:
        # The Luxembourg specification's example carries a wrong inner CRC.
        assert [d.reason for d in drops] == [DropReason.CRC_MISMATCH]
        found, _ = readings(data, key=parse_key(key), auth_key=ak, check_crc=False)
        assert len(found) == 1
    wrong, drops = readings(data, key=TEST_KEY, auth_key=ak)
    assert wrong == [] and [d.reason for d in drops] == [DropReason.DECRYPT_FAILED]


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "70316461656D6F6E2D746573746B6579",
        "70316461656d6f6e2d746573746b6579",
        " 7031 6461 656D 6F6E 2D74 6573 746B 6579 ",
    ],
)
def test_parse_key_accepts_hex_in_any_case_and_spacing(text: str) -> None:
    assert parse_key(text) == TEST_KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "xyz",
        "0123",
        "70316461656D6F6E2D746573746B657",
        "70316461656D6F6E2D746573746B657900",
        "é" * 32,
    ],
)
def test_parse_key_rejects_anything_else_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidKeyError, match="32 hexadecimal digits") as caught:
        parse_key(text, "--key")
    assert str(caught.value).startswith("--key ")
    assert isinstance(caught.value, ValueError)
