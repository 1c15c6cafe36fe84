"""``biogw keys``: master key from the environment, epochs, rotation, destruction."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.privacy import FileKeyStore, Pseudonymizer
from gateway.privacy.keystore import KeyStoreError
from gateway.privacy.master_key import master_key_from_env

MASTER = "00112233445566778899aabbccddeeff" * 2


def _run(tmp_path: Path, *args: str, master: str | None = MASTER) -> Result:
    env = {"BIOGW_PRIVACY__KEYSTORE_DIR": str(tmp_path / "keys"), "BIOGW_CONFIG": None}
    env["BIOGW_PRIVACY__MASTER_KEY"] = master
    return CliRunner().invoke(main, ["keys", *args], env=env)


def test_rotate_then_destroy_an_old_epoch(tmp_path: Path) -> None:
    subject = uuid.uuid4()
    store = FileKeyStore(tmp_path / "keys", master_key_from_env(MASTER))
    first = Pseudonymizer(store).pseudonym(subject, "research")
    assert ".e1." in first

    rotated = _run(tmp_path, "rotate", "research")
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stdout.strip() == "research: epoch 2"

    refused = _run(tmp_path, "destroy", "research", "1")
    assert refused.exit_code == 2  # needs --yes
    destroyed = _run(tmp_path, "destroy", "research", "1", "--yes")
    assert destroyed.exit_code == 0, destroyed.output

    status = _run(tmp_path, "status", "research")
    assert status.stdout.strip() == "research: current epoch 2; live [2]; destroyed [1]"
    fresh = Pseudonymizer(FileKeyStore(tmp_path / "keys", master_key_from_env(MASTER)))
    assert ".e2." in fresh.pseudonym(subject, "research")
    with pytest.raises(KeyStoreError):
        fresh.pseudonym(subject, "research", epoch=1)


def test_destroying_the_current_epoch_is_refused(tmp_path: Path) -> None:
    assert _run(tmp_path, "rotate", "research").exit_code == 0
    result = _run(tmp_path, "destroy", "research", "1", "--yes")
    assert result.exit_code == 1
    assert "biogw:" in result.output


def test_without_a_master_key_exit_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "status", master=None)
    assert result.exit_code == 2
    assert "BIOGW_PRIVACY__MASTER_KEY" in result.output


def test_a_wrong_master_key_is_refused_cleanly(tmp_path: Path) -> None:
    assert _run(tmp_path, "rotate", "research").exit_code == 0
    result = _run(tmp_path, "status", master="ff" * 32)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "master" in result.output


def test_new_master_prints_a_usable_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "new-master"])
    assert result.exit_code == 0
    assert len(master_key_from_env(result.output.strip())) == 32
