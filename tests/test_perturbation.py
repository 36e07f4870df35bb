"""VTLP, additive coloured noise, babble and reverberation (augment.vtlp_warps, augment.noise_snr_db,
augment.babble_snr_db, augment.reverb_rt60): what they do to the spectrum and the signal, the variants they add to
training utterances, and the feature cache keys of everything else kept."""

import hashlib

import numpy as np
import pytest
from conftest import demo_records, sine, write_manifest, write_wav
from python_speech_features import sigproc

import asr
from asr.data.audio import AudioError
from asr.data.datasets import Utterance
from asr.data.extraction import CACHE_VERSION, FeatureCache, Job, featurize
from asr.data.features import FeatureOptions, compute_mfcc, vtlp_mfcc
from asr.data.options import AugmentOptions
from asr.data.perturbation import (
    BABBLE_TALKERS,
    REVERB_DRR_DB,
    add_babble,
    add_noise,
    add_reverb,
    babble_talkers,
    coloured_noise,
    room_response,
    vtlp_frequency,
    vtlp_matrix,
)
from asr.data.preparation import prepare_data
from asr.data.text import Vocabulary
from asr.data.validation import prepare_all


def test_vtlp_scales_frequencies_below_the_boundary_and_keeps_both_ends():
    nyquist = 8000.0
    f = np.array([0.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(vtlp_frequency(f, 1.1, nyquist), [0.0, 1100.0, 4400.0, 8000.0])
    np.testing.assert_allclose(vtlp_frequency(f, 0.9, nyquist), [0.0, 900.0, 3600.0, 8000.0])
    # above the boundary (0.6 x Nyquist x min(warp, 1) / warp = 4364 Hz for 1.1) a line to the Nyquist frequency:
    # 6000 Hz -> 8000 - (8000 - 4800) / (8000 - 4363.6) x 2000 = 6240 Hz
    assert vtlp_frequency(np.array([6000.0]), 1.1, nyquist)[0] == pytest.approx(6240.0, abs=0.1)
    grid = np.linspace(0, nyquist, 1001)
    for warp in (0.7, 0.9, 1.1, 1.3):
        assert np.all(np.diff(vtlp_frequency(grid, warp, nyquist)) > 0)  # continuous and increasing


def test_vtlp_moves_a_tones_spectral_peak_by_the_warp_factor():
    rate, nfft = 16000, 512
    t = np.arange(rate) / rate
    spectrum = sigproc.powspec(sigproc.framesig(np.sin(2 * np.pi * 1000 * t), 400, 160), nfft).mean(axis=0)
    np.testing.assert_array_equal(vtlp_matrix(nfft, rate, 1.0), np.eye(nfft // 2 + 1))
    peaks = {w: np.argmax(vtlp_matrix(nfft, rate, w) @ spectrum) * rate / nfft for w in (0.9, 1.0, 1.1)}
    assert peaks == {0.9: 906.25, 1.0: 1000.0, 1.1: 1093.75}  # the FFT bins (31.25 Hz) nearest 900, 1000, 1100


@pytest.mark.parametrize(
    "options",
    [
        FeatureOptions(deltas=2),
        FeatureOptions(sample_rate=8000, numcep=20, nfilt=40, lowfreq=100, highfreq=3800, ceplifter=0),
        FeatureOptions(append_energy=False, preemph=0.0),
    ],
)
def test_the_vtlp_feature_path_at_warp_1_is_python_speech_features_mfcc(options):
    signal = np.random.default_rng(3).standard_normal(options.sample_rate).astype(np.float32) * 0.1
    plain = compute_mfcc(signal, options)[:, : options.numcep]
    np.testing.assert_array_equal(vtlp_mfcc(signal, options, 1.0).astype(np.float32), plain)
    warped = compute_mfcc(signal, options, 1.1)
    assert warped.shape == compute_mfcc(signal, options).shape and not np.allclose(warped[:, 1:], 0)
    assert np.abs(warped[:, 1 : options.numcep] - plain[:, 1:]).mean() > 0.05  # the warp changes the cepstrum


def _slope(noise: np.ndarray, rate: int = 16000) -> float:
    """The log-log slope of a noise's power spectrum (Welch-like average over 1,024-sample frames), 100-4,000 Hz."""
    frames = noise[: len(noise) // 1024 * 1024].reshape(-1, 1024)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    hz = np.fft.rfftfreq(1024, 1 / rate)
    band = (hz >= 100) & (hz <= 4000)
    return float(np.polyfit(np.log10(hz[band]), np.log10(power[band]), 1)[0])


def test_coloured_noise_has_unit_power_and_its_spectral_slope():
    rng = np.random.default_rng(0)
    slopes = {}
    for exponent in (0.0, 1.0, 2.0):
        noise = coloured_noise(160_000, exponent, rng)
        assert np.mean(noise**2) == pytest.approx(1.0) and abs(noise.mean()) < 0.05
        slopes[exponent] = _slope(noise)
    assert slopes[0.0] == pytest.approx(0.0, abs=0.1)
    assert slopes[1.0] == pytest.approx(-1.0, abs=0.1)
    assert slopes[2.0] == pytest.approx(-2.0, abs=0.1)


@pytest.mark.parametrize("snr_db", [5.0, 17.5, 30.0])
def test_noise_is_added_at_the_snr_drawn_from_the_signal(snr_db):
    signal = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    noisy, colour = add_noise(signal, snr_db)
    measured = 10 * np.log10(
        np.mean(signal.astype(np.float64) ** 2) / np.mean((noisy - signal).astype(np.float64) ** 2)
    )
    assert measured == pytest.approx(snr_db, abs=0.05) and noisy.dtype == np.float32
    again, same_colour = add_noise(signal, snr_db)
    np.testing.assert_array_equal(again, noisy)  # the same utterance and SNR: the same noise (cached features)
    assert same_colour == colour in ("white", "pink", "brown")
    other, _ = add_noise(signal * 0.5, snr_db)
    assert not np.allclose(other - signal * 0.5, (noisy - signal) * 0.5)  # another signal: other noise


def test_the_colour_is_drawn_per_utterance():
    colours = {add_noise(np.sin(np.arange(4000) * k / 100).astype(np.float32) * 0.5, 10.0)[1] for k in range(1, 25)}
    assert colours == {"white", "pink", "brown"}


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_the_room_response_decays_by_60_db_at_its_rt60_after_the_direct_sound(rt60):
    rate = 16000
    response = room_response(rt60, rate, drr_db=3.0, rng=np.random.default_rng(0))
    assert len(response) == int(rt60 * rate) and response[0] == 1.0
    tail = response[1:]
    assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(3.0)  # direct over reverberant energy
    # Schroeder's backward integral: the energy decay curve's slope over -5 to -25 dB, extrapolated to 60 dB (T20)
    decay = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
    t = np.arange(len(tail)) / rate
    fit = (decay <= -5) & (decay >= -25)
    slope = np.polyfit(t[fit], decay[fit], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.1)


def test_reverb_keeps_length_and_level_and_draws_its_room_from_the_signal():
    rate = 16000
    signal = np.zeros(rate, np.float32)
    signal[::800] = 0.5  # clicks 50 ms apart: reverberation fills the silence between them
    heard, drr_db = add_reverb(signal, 0.5, rate)
    assert heard.shape == signal.shape and heard.dtype == np.float32
    assert REVERB_DRR_DB[0] <= drr_db <= REVERB_DRR_DB[1]
    rms = lambda x: np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))  # noqa: E731
    assert rms(heard) == pytest.approx(rms(signal), rel=1e-5)
    gaps = np.ones(rate, bool)
    gaps[::800] = False
    assert np.all(signal[gaps] == 0) and rms(heard[gaps]) > 0.1 * rms(signal)  # the tail fills the gaps
    np.testing.assert_array_equal(add_reverb(signal, 0.5, rate)[0], heard)  # same utterance and RT60: same room
    assert not np.allclose(add_reverb(signal, 0.3, rate)[0], heard)


def test_the_cache_key_of_a_job_without_perturbation_is_unchanged_and_perturbed_ones_differ(tmp_path):
    audio = write_wav(tmp_path / "a.wav", 8000, sine(8000))
    options = FeatureOptions(sample_rate=8000)
    cache = FeatureCache(tmp_path / "cache", options)
    content = hashlib.sha256(audio.read_bytes()).hexdigest()
    settings = cache.settings
    assert f'"v": {CACHE_VERSION}' in settings
    before = hashlib.sha256(f"{content}|None|None|0.9|{settings}".encode()).hexdigest()  # the key as it was
    assert cache.key(Job(str(audio), speed=0.9)) == before
    keys = {cache.key(j) for j in (Job(str(audio)), Job(str(audio), warp=1.1), Job(str(audio), snr_db=10.0))}
    keys |= {cache.key(Job(str(audio), warp=0.9)), cache.key(Job(str(audio), snr_db=20.0))}
    assert len(keys | {cache.key(Job(str(audio), rt60=0.5)), cache.key(Job(str(audio), rt60=0.3))}) == 7


def test_featurize_applies_the_warp_the_noise_and_the_reverb(tmp_path):
    audio = write_wav(tmp_path / "a.wav", 16000, sine(16000, seconds=1.0, hz=700.0, amplitude=0.3))
    options = FeatureOptions(normalize="none")
    plain = featurize(Job(str(audio)), options)
    warped = featurize(Job(str(audio), warp=1.2), options)
    noisy = featurize(Job(str(audio), snr_db=5.0), options)
    reverberant = featurize(Job(str(audio), rt60=0.6), options)
    assert plain.shape == warped.shape == noisy.shape == reverberant.shape
    assert not np.allclose(plain, warped) and not np.allclose(plain, noisy) and not np.allclose(plain, reverberant)
    np.testing.assert_array_equal(featurize(Job(str(audio), snr_db=5.0), options), noisy)


def test_training_utterances_get_one_variant_per_speed_warp_snr_and_rt60(tmp_path):
    audio = write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.0))
    options, vocab = FeatureOptions(sample_rate=8000), Vocabulary()
    checked = prepare_all(
        [Utterance(audio, "one"), Utterance(audio, "two")],
        options,
        vocab,
        speeds=(1.0, 0.9),
        warps=(0.9, 1.1),
        snrs=(10.0,),
        rt60s=(0.4,),
    )
    assert [len(e.variants) for e in checked.examples] == [5, 5]  # 0.9 speed, two warps, one noise level, one room
    example = checked.examples[0]
    assert len(example.variants[0]) > len(example.features)  # speed 0.9: longer
    assert all(len(v) == len(example.features) for v in example.variants[1:])  # the others at speed 1
    expected = featurize(Job(str(audio), warp=1.1), options)
    np.testing.assert_array_equal(example.variants[2], expected)
    np.testing.assert_array_equal(example.variants[4], featurize(Job(str(audio), rt60=0.4), options))
    assert prepare_all([Utterance(audio, "one")], options, vocab).examples[0].variants == ()


def test_augment_options_are_off_by_default_and_check_their_values():
    assert AugmentOptions().vtlp_warps == () and AugmentOptions().noise_snr_db == ()
    assert AugmentOptions(vtlp_warps=[0.9, 1], noise_snr_db=[5, 30]).noise_snr_db == (5.0, 30.0)
    with pytest.raises(ValueError, match=r"augment.vtlp_warps must be factors within 0.7-1.3 .* got \[1.5\]"):
        AugmentOptions(vtlp_warps=[1.5])
    with pytest.raises(ValueError, match="augment.noise_snr_db must be finite decibels"):
        AugmentOptions(noise_snr_db=[float("inf")])
    assert AugmentOptions().reverb_rt60 == () and AugmentOptions(reverb_rt60=[0.3, 1]).reverb_rt60 == (0.3, 1.0)
    with pytest.raises(
        ValueError, match=r"augment.reverb_rt60 must be reverberation times within 0.05-3.0 s .* \[0.0\]"
    ):
        AugmentOptions(reverb_rt60=[0])


def test_only_the_training_split_is_perturbed(tmp_path):
    for split, count in (("train", 6), ("valid", 2)):
        write_manifest(tmp_path / f"{split}.jsonl", demo_records(split, count))
    options = asr.compose(
        [
            f"data.root={tmp_path}",
            "data.train=train.jsonl",
            "data.valid=valid.jsonl",
            "data.test=",
            "data.cache=false",
            "augment=none",
            "augment.vtlp_warps=[0.9,1.1]",
            "augment.noise_snr_db=[20]",
            "augment.reverb_rt60=[0.5]",
            "augment.babble_snr_db=[10]",
        ]
    )
    data = prepare_data(options.data, options.features, options.model.stride, options.augment)
    assert [len(e.variants) for e in data.examples["train"]] == [5] * 6
    assert [len(e.variants) for e in data.examples["valid"]] == [0] * 2


def test_babble_talkers_are_three_to_seven_other_voices_drawn_from_the_key_and_the_snr():
    keys = [f"u{n}" for n in range(40)]
    speakers = [f"s{n % 4}" for n in range(40)]
    chosen = babble_talkers(keys, speakers, 10.0)
    assert all(BABBLE_TALKERS[0] <= len(c) <= BABBLE_TALKERS[1] and len(set(c)) == len(c) for c in chosen)
    assert len({len(c) for c in chosen}) > 1  # the number of talkers varies
    assert all(speakers[t] != speakers[n] for n, c in enumerate(chosen) for t in c)
    assert babble_talkers(keys, speakers, 10.0) == chosen  # same keys and SNR: same talkers
    assert babble_talkers(keys, speakers, 20.0) != chosen
    # one voice only (or no speakers named): any other utterance, never the utterance itself
    alone = babble_talkers(keys[:5], ["s"] * 5, 10.0)
    assert all(3 <= len(c) <= 4 and n not in c for n, c in enumerate(alone))  # at most the 4 others
    assert all(n not in c for n, c in enumerate(babble_talkers(keys, [None] * 40, 5.0)))
    assert babble_talkers(["only"], [None], 10.0) == [()]


def test_babble_is_added_at_the_snr_asked_and_drawn_from_the_signal():
    rng = np.random.default_rng(0)
    signal = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    talkers = [0.1 * np.sin(np.arange(n) * 0.01 * (k + 1)) for k, n in enumerate((4000, 20000, 9000))]
    noisy = add_babble(signal, talkers, 10.0)
    assert noisy.dtype == np.float32 and noisy.shape == signal.shape
    babble = noisy.astype(np.float64) - signal
    assert 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(babble**2)) == pytest.approx(10.0, abs=0.01)
    np.testing.assert_array_equal(add_babble(signal, talkers, 10.0), noisy)
    assert not np.allclose(add_babble(signal, talkers, 20.0), noisy)
    quiet = add_babble(signal, talkers, 30.0).astype(np.float64) - signal
    assert np.mean(quiet**2) == pytest.approx(np.mean(babble**2) / 100, rel=0.05)
    # a silent talker adds nothing; with no voice left the signal stays as it was
    np.testing.assert_array_equal(add_babble(signal, [np.zeros(500)], 10.0), signal)
    with_silence = add_babble(signal, [*talkers, np.zeros(100)], 10.0)
    assert np.mean((with_silence - signal) ** 2) == pytest.approx(np.mean(babble**2), rel=1e-5)


def test_babble_jobs_mix_their_talkers_and_are_keyed_by_them(tmp_path):
    target = write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.0, hz=300.0, amplitude=0.3))
    first = write_wav(tmp_path / "b.wav", 8000, sine(8000, seconds=0.5, hz=900.0, amplitude=0.2))
    second = write_wav(tmp_path / "c.wav", 8000, sine(8000, seconds=0.7, hz=1500.0, amplitude=0.2))
    options = FeatureOptions(sample_rate=8000, normalize="none")
    talkers = ((str(first), None, None), (str(second), None, None))
    babbled = featurize(Job(str(target), snr_db=5.0, babble=talkers), options)
    plain = featurize(Job(str(target)), options)
    coloured = featurize(Job(str(target), snr_db=5.0), options)
    assert babbled.shape == plain.shape
    assert not np.allclose(babbled, plain) and not np.allclose(babbled, coloured)
    one_talker = featurize(Job(str(target), snr_db=5.0, babble=talkers[:1]), options)
    assert not np.allclose(babbled, one_talker)
    # an unreadable talker is left out; with none readable the variant is refused, naming the utterance
    missing = (str(tmp_path / "gone.wav"), None, None)
    np.testing.assert_array_equal(
        featurize(Job(str(target), snr_db=5.0, babble=(*talkers[:1], missing)), options), one_talker
    )
    with pytest.raises(AudioError, match=r"a\.wav.*none of the 1 talkers of its babble could be read"):
        featurize(Job(str(target), snr_db=5.0, babble=(missing,)), options)
    cache = FeatureCache(tmp_path / "cache", options)
    keys = {
        cache.key(Job(str(target), snr_db=5.0)),
        cache.key(Job(str(target), snr_db=5.0, babble=talkers)),
        cache.key(Job(str(target), snr_db=5.0, babble=talkers[:1])),
        cache.key(Job(str(target), snr_db=5.0, babble=((str(first), 0.0, 0.2),))),
        cache.key(Job(str(target), snr_db=5.0, babble=(missing,))),
    }
    assert None not in keys and len(keys) == 5
    before = cache.key(Job(str(target), snr_db=5.0, babble=talkers))
    write_wav(second, 8000, sine(8000, seconds=0.7, hz=1700.0, amplitude=0.2))  # a talker's audio changed
    assert cache.key(Job(str(target), snr_db=5.0, babble=talkers)) != before


def test_training_utterances_get_a_babble_variant_of_other_utterances_per_snr(tmp_path):
    options, vocab = FeatureOptions(sample_rate=8000), Vocabulary()
    utterances = [
        Utterance(
            write_wav(tmp_path / f"{n}.wav", 8000, sine(8000, seconds=1.0, hz=200.0 + 150 * n)),
            "one",
            speaker=f"s{n % 3}",
        )
        for n in range(8)
    ]
    checked = prepare_all(utterances, options, vocab, speeds=(1.0, 0.9), babble_snrs=(10.0, 20.0))
    assert [len(e.variants) for e in checked.examples] == [3] * 8  # 0.9 speed, two babble levels
    chosen = babble_talkers([u.key for u in utterances], [u.speaker for u in utterances], 20.0)
    sources = tuple((str(utterances[t].audio), None, None) for t in chosen[2])
    expected = featurize(Job(str(utterances[2].audio), snr_db=20.0, babble=sources), options)
    np.testing.assert_array_equal(checked.examples[2].variants[2], expected)
