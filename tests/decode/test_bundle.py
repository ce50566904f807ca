import numpy as np
import pytest

from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.errors import BundleError, ShapeMismatchError
from rt_recon.preprocess import DespikeSpec, GlmSpec, MotionSpec, PreprocessSpec
from rt_recon.protocol import VolumeStreamMeta


def make_bundle(n_channels=60, shape=(3, 4, 5)) -> DecoderBundle:
    rng = np.random.default_rng(0)
    head = DecoderHead(
        name="z",
        voxels=np.arange(0, 20, dtype=np.int64),
        weights=rng.normal(size=(20, 8)).astype(np.float32),
        intercept=np.zeros(8, np.float32),
        alphas=np.full(8, 10.0, np.float32),
        target_shape=(2, 2, 2),
    )
    return DecoderBundle(
        heads={"z": head},
        stream=StreamSpec(shape, n_channels, "full"),
        preprocess=PreprocessSpec(zscore_warmup_trs=3),
        window=WindowSpec((0.6, 0.4), lag_trs=4, tr_s=1.0),
        model=ModelSpec("abc", (2, 2, 2), (3, 4), image_size=16),
        report={"note": "test"},
    )


def test_save_load_round_trip(tmp_path):
    bundle = make_bundle()
    path = bundle.save(tmp_path / "b.safetensors")
    loaded = DecoderBundle.load(path)
    np.testing.assert_array_equal(loaded.heads["z"].weights, bundle.heads["z"].weights)
    np.testing.assert_array_equal(loaded.heads["z"].voxels, bundle.heads["z"].voxels)
    assert loaded.heads["z"].target_shape == (2, 2, 2)
    assert loaded.preprocess == bundle.preprocess and loaded.report == {"note": "test"}
    assert loaded.window == bundle.window and loaded.model == bundle.model
    assert not (tmp_path / "b.safetensors.partial").exists()


def test_stream_with_other_voxel_count_names_both_sides():
    bundle = make_bundle(n_channels=60)
    meta = VolumeStreamMeta(shape=(4, 4, 4), affine=np.eye(4), tr_s=1.0)
    with pytest.raises(ShapeMismatchError) as info:
        bundle.check_stream(meta)
    message = str(info.value)
    assert "fitted on 60 voxels" in message and "(3, 4, 5)" in message
    assert "stream sends 64 voxels" in message and "(4, 4, 4)" in message


def test_stream_with_same_count_but_other_shape_is_refused():
    bundle = make_bundle(n_channels=60, shape=(3, 4, 5))
    meta = VolumeStreamMeta(shape=(5, 4, 3), affine=np.eye(4), tr_s=1.0)
    with pytest.raises(ShapeMismatchError, match=r"shape \(3, 4, 5\).*shape \(5, 4, 3\)"):
        bundle.check_stream(meta)
    bundle.check_stream(VolumeStreamMeta(shape=(3, 4, 5), affine=np.eye(4), tr_s=1.0))


def test_model_mismatch_names_both_fingerprints_and_shapes():
    bundle = make_bundle()
    other = ModelSpec("xyz", (4, 8, 8), (3, 4), image_size=64)
    with pytest.raises(BundleError, match=r"fitted for render model abc.*/models/x is xyz") as info:
        bundle.check_model(other, "/models/x")
    assert "z (2, 2, 2) vs (4, 8, 8)" in str(info.value)
    same_shapes = ModelSpec("xyz", (2, 2, 2), (3, 4), image_size=16)
    with pytest.raises(BundleError, match=r"fitted for render model abc.* is xyz"):
        bundle.check_model(same_shapes)  # same shapes, other weights: refused all the same
    bundle.check_model(ModelSpec("abc", (2, 2, 2), (3, 4), image_size=16))


def test_every_preprocessing_setting_survives_the_round_trip(tmp_path):
    bundle = make_bundle()
    affine = np.diag([3.0, 3.0, 3.5, 1.0])
    bundle.preprocess = PreprocessSpec(
        zscore_warmup_trs=6,
        motion=MotionSpec(affine, fwhm=6.0, sep=3.0, quality=0.8),
        despike=DespikeSpec(threshold=3.5),
        detrend=GlmSpec(degree=3, motion=False),
    )
    bundle.reference = np.ones((3, 4, 5), np.float32)
    loaded = DecoderBundle.load(bundle.save(tmp_path / "spec.safetensors"))
    assert loaded.preprocess.to_json() == bundle.preprocess.to_json()
    assert loaded.preprocess.despike == DespikeSpec(threshold=3.5)
    assert loaded.preprocess.detrend == GlmSpec(degree=3, motion=False)
    np.testing.assert_array_equal(loaded.preprocess.motion.reference_affine, affine)


def test_an_unknown_preprocessing_key_is_refused(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = make_bundle().save(tmp_path / "b.safetensors")
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["rt_recon_bundle"])
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta["preprocess"]["despike"] = {"threshold": 4.0, "window": 9}
    save_file(arrays, str(path), metadata={"rt_recon_bundle": json.dumps(meta)})
    with pytest.raises(BundleError, match=r"preprocess.despike: expected keys \['threshold'\]"):
        DecoderBundle.load(path)


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        DecoderBundle.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(BundleError, match="not a safetensors decoder bundle"):
        DecoderBundle.load(junk)
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(BundleError, match="no 'rt_recon_bundle' metadata"):
        DecoderBundle.load(tmp_path / "plain.safetensors")


class _Booby:
    """Unpickling this creates ``path``: proof that a loader ran pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_renamed_safetensors_is_refused_without_being_unpickled(tmp_path, kind):
    marker = tmp_path / "unpickled"
    fake = tmp_path / "bundle.safetensors"
    if kind == "pickle":
        import pickle

        fake.write_bytes(pickle.dumps({"z.weights": _Booby(marker)}))
    else:
        import torch

        torch.save({"z.weights": _Booby(marker)}, fake)  # a zip of pickles, as a .pt/.bin
    with pytest.raises(BundleError, match=rf"{fake}: not a safetensors decoder bundle"):
        DecoderBundle.load(fake)
    assert not marker.exists(), "the bundle loader unpickled the file"


def test_inconsistent_head_is_refused():
    with pytest.raises(BundleError, match="target shape"):
        DecoderHead(
            "z",
            np.arange(3),
            np.zeros((3, 5), np.float32),
            np.zeros(5, np.float32),
            np.ones(5, np.float32),
            target_shape=(2, 2),
        )


def test_low_rank_head_round_trip_and_validation(tmp_path):
    bundle = make_bundle()
    head = bundle.heads["z"]
    rng = np.random.default_rng(1)
    bundle.heads["z"] = DecoderHead(
        name="z",
        voxels=head.voxels,
        weights=rng.normal(size=(20, 3)).astype(np.float32),
        intercept=head.intercept,
        alphas=np.ones(3, np.float32),
        target_shape=(2, 2, 2),
        components=rng.normal(size=(3, 8)).astype(np.float32),
    )
    loaded = DecoderBundle.load(bundle.save(tmp_path / "low.safetensors"))
    assert loaded.heads["z"].rank == 3
    np.testing.assert_array_equal(loaded.heads["z"].components, bundle.heads["z"].components)
    with pytest.raises(BundleError, match=r"components must be \(3, 8\)"):
        DecoderHead(
            "z",
            head.voxels,
            np.zeros((20, 3), np.float32),
            head.intercept,
            np.ones(3, np.float32),
            (2, 2, 2),
            components=np.zeros((4, 8), np.float32),
        )


def test_a_fortran_ordered_reference_volume_survives_the_round_trip(tmp_path):
    """safetensors writes raw memory; a volume reshaped in F order must not come back scrambled."""
    bundle = make_bundle()
    volume = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5, order="F")
    assert not volume.flags["C_CONTIGUOUS"]
    bundle.reference = volume
    loaded = DecoderBundle.load(bundle.save(tmp_path / "ref.safetensors"))
    np.testing.assert_array_equal(loaded.reference, volume)
