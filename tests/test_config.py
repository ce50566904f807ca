from pathlib import Path

import pytest

from rt_recon.config import SessionConfig, is_loopback_endpoint, load_config, validate_config
from rt_recon.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_demo_config_loads_and_resolves_paths():
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.renderer.model == "embedded"
    assert config.paths.output_dir.is_absolute()
    assert "~" not in str(config.paths.cache_dir)
    assert config.simulation.tr_s == 1.5


def test_the_repetition_time_is_tr_s_and_the_earlier_key_tr_still_reads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("simulation:\n  tr: 2.0\n")
    assert load_config(path).simulation.tr_s == 2.0
    config = SessionConfig()
    assert config.with_overrides({"simulation.tr": 0.8}).simulation.tr_s == 0.8
    assert config.with_overrides({"simulation.tr_s": 0.9}).simulation.tr_s == 0.9
    with pytest.raises(ConfigError, match=r"simulation\.tr: Input should be greater than 0"):
        validate_config({"simulation": {"tr": 0}}, "old.yaml")
    # dumped by alias (a dataset manifest, a cached session's key) it is still "tr"
    assert config.simulation.model_dump(by_alias=True)["tr"] == 1.5


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_loads_and_binds_loopback_only(name):
    config = load_config(REPO / "configs" / name)
    assert all(is_loopback_endpoint(e) for e in config.zmq_endpoints().values())
    assert config.console.host == "127.0.0.1"


def test_the_scanner_config_runs_a_live_session():
    config = load_config(REPO / "configs" / "scanner.yaml")
    assert set(config.run.nodes) == {"decoder", "renderer", "recorder", "console"}
    assert config.decoder.wait_for_subscribers == 2  # renderer and recorder miss no TR
    assert config.recorder.control_endpoint is not None  # the console's record button
    assert config.stream.resolve_timeout_s >= 300  # set up before the scanner starts


def test_the_sd_turbo_config_renders_on_cuda_in_half_precision():
    renderer = load_config(REPO / "configs" / "sd-turbo.yaml").renderer
    assert (renderer.device, renderer.dtype, renderer.compile) == ("cuda", "float16", True)
    assert renderer.use_channels_last() and renderer.steps <= 4


def test_unknown_key_names_file_key_and_expected_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("renderer:\n  stepz: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "renderer.stepz: unknown key" in message
    assert "steps" in message and "strength" in message  # what was expected


def test_unknown_section_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rendering:\n  steps: 4\n")
    with pytest.raises(ConfigError, match=r"rendering: unknown key \(expected one of: session"):
        load_config(path)


def test_wrong_type_names_key_expected_and_found(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("renderer:\n  steps: four\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "renderer.steps" in message
    assert "integer" in message  # expected
    assert "'four'" in message and "str" in message  # found


def test_out_of_range_and_bad_endpoint(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("renderer:\n  strength: 1.5\ndecoder:\n  latents_endpoint: http://x:1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "renderer.strength" in str(info.value)
    assert "decoder.latents_endpoint" in str(info.value)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_overrides_are_validated():
    config = SessionConfig()
    assert config.with_overrides({"replay.speed": 3}).replay.speed == 3
    with pytest.raises(ConfigError, match=r"replay\.speed"):
        config.with_overrides({"replay.speed": -1})
    with pytest.raises(ConfigError, match="unknown section"):
        config.with_overrides({"nosuch.key": 1})


def test_json_round_trip(tmp_path):
    config = SessionConfig().resolved()
    path = tmp_path / "session.json"
    path.write_text(config.to_json())
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/x", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://10.1.2.3:5555", False),
    ],
)
def test_loopback_detection(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


# --- security: ZeroMQ CURVE keys -------------------------------------------------------------

ALL_CURVE_KEYS = (
    "security.curve_server_cert, security.curve_authorized_clients, "
    "security.curve_client_cert, security.curve_server_public"
)


@pytest.mark.parametrize(
    ("section", "key", "endpoint"),
    [
        ("decoder", "latents_endpoint", "tcp://0.0.0.0:5555"),
        ("renderer", "frames_endpoint", "tcp://10.1.2.3:5556"),
        ("recorder", "status_endpoint", "tcp://scanner-pc.local:5557"),
        ("recorder", "control_endpoint", "tcp://192.168.1.20:5558"),
    ],
)
def test_a_non_loopback_endpoint_without_curve_keys_is_a_config_error(
    tmp_path, section, key, endpoint
):
    path = tmp_path / "open.yaml"
    path.write_text(f"{section}:\n  {key}: {endpoint}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{section}.{key} '{endpoint}' is not a loopback endpoint" in message
    assert f"needs ZeroMQ CURVE keys: set {ALL_CURVE_KEYS}" in message  # what to set
    assert "rt-recon keys DIR" in message


def test_curve_always_needs_keys_on_loopback_too():
    with pytest.raises(ConfigError, match=r"decoder.latents_endpoint 'tcp://127.0.0.1:5555' "
                       r"needs ZeroMQ CURVE keys because security.curve is always"):  # fmt: skip
        SessionConfig().with_overrides({"security.curve": "always"})


def test_partly_set_curve_keys_name_the_missing_ones(tmp_path):
    from rt_recon.transport.curve import write_certificates

    keys = write_certificates(tmp_path / "keys")
    path = tmp_path / "half.yaml"
    path.write_text(
        f"decoder:\n  latents_endpoint: tcp://0.0.0.0:5555\n"
        f"security:\n  curve_server_cert: {keys.server_secret}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "set security.curve_authorized_clients, security.curve_client_cert, " in message
    assert "set security.curve_server_cert" not in message


def test_curve_keys_make_a_non_loopback_endpoint_valid_and_resolve(tmp_path, monkeypatch):
    from rt_recon.transport.curve import write_certificates

    write_certificates(tmp_path / "keys")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lab.yaml"
    path.write_text(
        "decoder:\n  latents_endpoint: tcp://0.0.0.0:5555\n"
        "security:\n"
        "  curve_server_cert: keys/server.key_secret\n"
        "  curve_authorized_clients: keys/authorized_clients\n"
        "  curve_client_cert: keys/client.key_secret\n"
        "  curve_server_public: keys/server.key\n"
    )
    config = load_config(path)
    assert config.security.curve_server_cert == tmp_path / "keys" / "server.key_secret"
    assert config.security.curve_authorized_clients == tmp_path / "keys" / "authorized_clients"
    assert config.security.curve_on("tcp://0.0.0.0:5555")
    assert not config.security.curve_on(config.renderer.frames_endpoint)  # loopback: plain


def test_a_missing_key_file_or_folder_is_named_with_its_path(tmp_path):
    absent = tmp_path / "nope.key_secret"
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"security:\n  curve_client_cert: {absent}\n"
        f"  curve_authorized_clients: {tmp_path / 'no_folder'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "security.curve_client_cert: " in message
    assert "expected an existing ZeroMQ certificate file" in message
    assert f"found '{absent}'" in message
    assert "security.curve_authorized_clients: " in message
    assert f"found '{tmp_path / 'no_folder'}'" in message


def test_budget_stages_are_the_protocols_stages():
    from rt_recon.config import BUDGET_PRESETS_MS, BudgetsSection
    from rt_recon.protocol import STAGE_NAMES

    for preset in BUDGET_PRESETS_MS.values():
        assert tuple(preset) == STAGE_NAMES
    overridable = set(BudgetsSection.model_fields) - {"preset"}
    assert overridable == set(STAGE_NAMES)


def test_budgets_pick_the_gpu_preset_on_cuda_and_take_overrides():
    from rt_recon.config import BUDGET_PRESETS_MS

    cpu = validate_config({}, "t").budgets_ms()
    gpu = validate_config({"renderer": {"device": "cuda:0"}}, "t").budgets_ms()
    assert cpu == BUDGET_PRESETS_MS["cpu"] and gpu == BUDGET_PRESETS_MS["gpu"]
    tuned = validate_config({"budgets": {"preset": "gpu", "render": 20}}, "t").budgets_ms()
    assert tuned == {**BUDGET_PRESETS_MS["gpu"], "render": 20.0}
    with pytest.raises(ConfigError, match=r"budgets\.rendr: unknown key"):
        validate_config({"budgets": {"rendr": 20}}, "t")


def test_the_quality_thresholds_are_checked_and_named(tmp_path):
    assert SessionConfig().quality.max_dvars_z == 8.0
    with pytest.raises(ConfigError, match=r"quality\.min_tsnr: Input should be greater than 0"):
        validate_config({"quality": {"min_tsnr": -5}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"quality\.window_trs: Input should be greater than or"):
        validate_config({"quality": {"window_trs": 5}}, "s.yaml")
    with pytest.raises(ConfigError) as info:
        validate_config({"quality": {"stop_window_trs": 10, "stop_after_trs": 12}}, "s.yaml")
    assert "quality.stop_after_trs (12) must be at most quality.stop_window_trs (10)" in str(
        info.value
    )
