"""packaging/pjsua2/speex-early-residual.patch: Speex's echo suppression while its filter learns.

The patch is applied to pjproject's own copy of Speex by build.sh. Here it is compiled with pjproject's Speex
sources from the vendored tarball (the canceller, its preprocessor and their FFT: a few seconds of gcc, no
pjproject build), and run on espeak-ng speech with an echo 100 ms / -6 dB behind the reference, as the paced
card's loop puts it: stock Speex sends the first second of the resident's speech back nearly whole, the patched
one suppresses it by 30 dB, and the visitor alone later is not touched by it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks.aec_speech import RATE, level_db, read_wav, speak

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging" / "pjsua2"
PATCH = PACKAGING / "speex-early-residual.patch"
SPEEX = "pjproject-2.15.1/third_party/speex"
SOURCES = ("mdf.c", "preprocess.c", "fftwrap.c", "smallft.c", "filterbank.c")
FRAME = 320  # 20 ms at 16 kHz: pjmedia's frame for the canceller
# speex_preprocess_ctl requests (speex_preprocess.h) and speex_echo_ctl's SET_SAMPLING_RATE
SET_DENOISE, SET_AGC, SET_ECHO_STATE, ECHO_SET_SAMPLING_RATE = 0, 2, 24, 24

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("patch") is None, reason="no gcc/patch")


def vendored_tarball() -> Path:
    """pjproject's tarball where build.sh looks for it: ../shared/vendor/ next to the clone or its main checkout."""
    common = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    for root in (REPO, Path(common).parent if common else REPO):
        candidate = root.parent / "shared" / "vendor" / "pjproject-2.15.1.tar.gz"
        if candidate.is_file():
            return candidate
    pytest.skip("pjproject-2.15.1.tar.gz is not vendored next to the clone")


@pytest.fixture(scope="module")
def speex_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pjproject")
    with tarfile.open(vendored_tarball()) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"{SPEEX}/")]
        tar.extractall(root, members=members, filter="data")
    # Speex's config for a floating-point build without pjlib (pjproject's includes <pj/types.h>)
    (root / "config.h").write_text("#define FLOATING_POINT\n#define USE_SMALLFT\n#define EXPORT\n")
    types = root / "include" / "speex" / "speex_config_types.h"
    types.parent.mkdir(parents=True)
    types.write_text(
        "#include <stdint.h>\ntypedef int16_t spx_int16_t;\ntypedef uint16_t spx_uint16_t;\n"
        "typedef int32_t spx_int32_t;\ntypedef uint32_t spx_uint32_t;\n"
    )
    return root


def site_defines(**overrides: str) -> tuple[str, ...]:
    """config_site.h's settings for the patch (what build.sh builds with) as gcc -D flags, some overridden."""
    values = {}
    for line in (PACKAGING / "config_site.h").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("SPEEX_AEC_"):
            values[parts[1]] = parts[2]
    assert set(values) == {"SPEEX_AEC_EARLY_HOLD_MS", "SPEEX_AEC_REARM_MS", "SPEEX_AEC_EARLY_GAIN"}, values
    values.update(overrides)
    return tuple(f"-D{name}={value}" for name, value in sorted(values.items()))


def compile_speex(root: Path, *defines: str, patched: bool) -> Path:
    """The canceller's library, stock or patched, with ``defines`` (compiled once per module and setting)."""
    name = "-".join(["patched" if patched else "stock", *(d.removeprefix("-D").replace(".", "_") for d in defines)])
    if (root / name / "libspeexaec.so").is_file():
        return root / name / "libspeexaec.so"
    tree = root / name
    shutil.copytree(root / "pjproject-2.15.1", tree / "pjproject-2.15.1")
    if patched:
        subprocess.run(
            ["patch", "-p1", "--forward", "--batch", "-i", str(PATCH)],
            cwd=tree / "pjproject-2.15.1",
            check=True,
            capture_output=True,
        )
    libspeex = tree / SPEEX / "libspeex"
    out = tree / "libspeexaec.so"
    argv = ["gcc", "-O2", "-fPIC", "-shared", "-DHAVE_CONFIG_H", *defines, f"-I{root}", f"-I{root / 'include'}"]
    argv += [f"-I{tree / SPEEX / 'include'}", f"-I{libspeex}", *(str(libspeex / s) for s in SOURCES), "-lm"]
    subprocess.run([*argv, "-o", str(out)], check=True, capture_output=True)
    return out


def cancel(library: Path, mic: np.ndarray, reference: np.ndarray, stall_at: int | None = None) -> np.ndarray:
    """pjmedia's echo_speex.c in short: the canceller, then the preprocessor (denoise on, AGC off: our defaults)
    with the canceller's state for its residual-echo suppression. Frames go through pjmedia's pairing
    (``speex_echo_playback`` from the playback side, ``speex_echo_capture`` from the capture side); at frame
    ``stall_at`` the playback side stalls for 3 frames and catches up in a burst (a loaded machine): Speex's
    2-frame reference buffer runs dry (a capture with no playback frame), then auto-fills a frame and discards
    another: the reference under the filter is disturbed, and the filter has to learn again."""
    lib = ctypes.CDLL(str(library))
    lib.speex_echo_state_init.restype = lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_ctl.argtypes = lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] * 4
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    echo = lib.speex_echo_state_init(FRAME, RATE * 150 // 1000)  # the daemon's 150 ms tail
    rate, on, off = ctypes.c_int(RATE), ctypes.c_int(1), ctypes.c_int(0)
    lib.speex_echo_ctl(echo, ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
    pre = lib.speex_preprocess_state_init(FRAME, RATE)
    lib.speex_preprocess_ctl(pre, SET_DENOISE, ctypes.byref(on))
    lib.speex_preprocess_ctl(pre, SET_AGC, ctypes.byref(off))
    lib.speex_preprocess_ctl(pre, SET_ECHO_STATE, ctypes.c_void_p(echo))
    m16 = np.clip(mic * 32768, -32768, 32767).astype(np.int16)
    r16 = np.clip(reference * 32768, -32768, 32767).astype(np.int16)
    lib.speex_echo_playback.argtypes = [ctypes.c_void_p] * 2
    lib.speex_echo_capture.argtypes = [ctypes.c_void_p] * 3
    out = np.zeros(len(m16) // FRAME * FRAME, dtype=np.int16)
    frames = len(out) // FRAME
    order = [(side, k) for k in range(frames) for side in ("play", "capture")]
    if stall_at is not None:  # playbacks stall_at .. +2 wait until capture stall_at + 2 has been taken
        stalled = [("play", k) for k in range(stall_at, stall_at + 3)]
        order = [o for o in order if o not in stalled]
        at = order.index(("capture", stall_at + 2)) + 1
        order[at:at] = stalled
    for side, k in order:
        i = k * FRAME
        if side == "play":
            lib.speex_echo_playback(echo, np.ascontiguousarray(r16[i : i + FRAME]).ctypes.data_as(ctypes.c_void_p))
            continue
        frame = out[i : i + FRAME]
        m = np.ascontiguousarray(m16[i : i + FRAME])
        lib.speex_echo_capture(echo, m.ctypes.data_as(ctypes.c_void_p), frame.ctypes.data_as(ctypes.c_void_p))
        lib.speex_preprocess_run(pre, frame.ctypes.data_as(ctypes.c_void_p))
    return out / 32768.0


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The resident's speech as the reference; the microphone: its echo 100 ms later at -6 dB, then the visitor
    alone after the resident stops."""
    tmp = tmp_path_factory.mktemp("speech")
    resident = read_wav(speak("Pode entrar, vou abrir o portão agora. Empurre com força, por favor.", tmp / "r.wav"))
    visitor = read_wav(speak("Boa tarde, é a entrega do mercado.", tmp / "v.wav"))
    delay, visitor_at = RATE // 10, len(resident) + RATE
    length = visitor_at + len(visitor) + RATE // 2
    reference, mic = np.zeros(length), np.zeros(length)
    reference[: len(resident)] = resident
    mic[delay : delay + len(resident)] = resident * 0.5
    mic[visitor_at : visitor_at + len(visitor)] += visitor * 0.5
    mic += np.random.default_rng(1).normal(0, 1e-4, length)  # a quiet room's noise floor
    first_word = int(np.argmax(np.abs(resident) > 0.05)) + delay
    marks = {"first_word": np.asarray(first_word), "visitor_at": np.asarray(visitor_at)}
    return {"mic": mic, "reference": reference, **marks}


def first_second_erle(room: dict[str, np.ndarray], sent: np.ndarray) -> float:
    start = int(room["first_word"])
    second = slice(start, start + RATE)
    return level_db(room["mic"][second]) - level_db(sent[second])


def visitor_level_db(room: dict[str, np.ndarray], sent: np.ndarray) -> float:
    alone = slice(int(room["visitor_at"]), len(sent))
    return level_db(sent[alone]) - level_db(room["mic"][alone])


def test_the_patch_applies_and_is_part_of_the_build_key() -> None:
    build = (PACKAGING / "build.sh").read_text()
    patches = next(line for line in build.splitlines() if line.startswith("PATCHES=("))
    assert '"$HERE/speex-early-residual.patch"' in patches  # among the patches every build applies
    assert '"${PATCHES[@]}" | cut -d' in build  # hashed into the cache key with config_site.h and build.sh
    assert 'patch -p1 --forward --batch <"$patch_file"' in build
    site = (PACKAGING / "config_site.h").read_text()
    assert "#define SPEEX_AEC_EARLY_HOLD_MS 1000" in site and "#define SPEEX_AEC_REARM_MS 1000" in site
    assert "#define SPEEX_AEC_EARLY_GAIN 0.25f" in site


@needs_gcc
@pytest.mark.timeout(180)
def test_stock_speex_sends_the_first_second_back_the_patch_suppresses_it(
    speex_sources: Path, room: dict[str, np.ndarray]
) -> None:
    stock = cancel(compile_speex(speex_sources, patched=False), room["mic"], room["reference"])
    patched = cancel(compile_speex(speex_sources, *site_defines(), patched=True), room["mic"], room["reference"])
    assert first_second_erle(room, stock) < 15  # the filter has not adapted yet
    assert first_second_erle(room, patched) > 30  # measured 38.0 dB (stock: 2.0)
    # The visitor alone, a second after the resident: the early estimate has let go (as stock Speex, within 1 dB)
    assert abs(visitor_level_db(room, patched) - visitor_level_db(room, stock)) < 1.0
    assert visitor_level_db(room, patched) > -3.0


@needs_gcc
@pytest.mark.timeout(180)
def test_a_negative_hold_is_stock_speex(speex_sources: Path, room: dict[str, np.ndarray]) -> None:
    """config_site.h's SPEEX_AEC_EARLY_HOLD_MS = -1 turns the patch off: the output is stock Speex's, sample for
    sample."""
    stock = cancel(compile_speex(speex_sources, patched=False), room["mic"], room["reference"])
    library = compile_speex(speex_sources, *site_defines(SPEEX_AEC_EARLY_HOLD_MS="-1"), patched=True)
    off = cancel(library, room["mic"], room["reference"])
    assert np.array_equal(stock, off)


def second_after(room: dict[str, np.ndarray], sent: np.ndarray, frame: int) -> float:
    """ERLE over the second after ``frame`` (resident's speech only)."""
    span = slice(frame * FRAME, frame * FRAME + RATE)
    return level_db(room["mic"][span]) - level_db(sent[span])


@needs_gcc
@pytest.mark.timeout(180)
def test_after_the_reference_slips_a_frame_the_echo_stays_suppressed(
    speex_sources: Path, room: dict[str, np.ndarray]
) -> None:
    """A stall 3 s into the resident's speech (the filter converged): stock Speex lets the echo through while it
    relearns (measured 1.8 dB over the next second, 13.3 dB over the one after); the patch re-arms the far-end
    estimate for SPEEX_AEC_REARM_MS (25.0 and 24.9 dB at config_site.h's 0.25 gain; 36.9 dB at a gain of 1.0)."""
    stall = int(room["first_word"]) // FRAME + 150
    stock = cancel(compile_speex(speex_sources, patched=False), room["mic"], room["reference"], stall)
    patched_lib = compile_speex(speex_sources, *site_defines(), patched=True)
    patched = cancel(patched_lib, room["mic"], room["reference"], stall)
    no_rearm_lib = compile_speex(speex_sources, *site_defines(SPEEX_AEC_REARM_MS="0"), patched=True)
    no_rearm = cancel(no_rearm_lib, room["mic"], room["reference"], stall)
    assert second_after(room, stock, stall) < 20
    assert second_after(room, no_rearm, stall) < 20  # the early estimate alone has let go by then
    assert second_after(room, patched, stall) > 20
    assert second_after(room, patched, stall + 50) > 20
