"""Alpaca credentials: environment first, then .env; masked everywhere; clear errors."""
import pytest

from pyrt_shm.credentials import (KEY_VAR, SECRET_VAR, Credentials, MissingCredentials,
                                  alpaca_credentials, read_dotenv)


def test_environment_wins_over_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"{KEY_VAR}=file-key\n{SECRET_VAR}=file-secret\n")
    c = alpaca_credentials({KEY_VAR: "env-key", SECRET_VAR: "env-secret"}, str(env_file))
    assert (c.key_id, c.secret_key) == ("env-key", "env-secret")


def test_dotenv_fills_what_the_environment_lacks(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"# comment\n\nexport {KEY_VAR}='PKFILE'\n{SECRET_VAR}=\"s3cr3t\"\n")
    c = alpaca_credentials({KEY_VAR: ""}, str(env_file))
    assert (c.key_id, c.secret_key) == ("PKFILE", "s3cr3t")


def test_missing_names_both_variables_and_the_file(tmp_path):
    with pytest.raises(MissingCredentials) as e:
        alpaca_credentials({}, str(tmp_path / ".env"))
    msg = str(e.value)
    assert KEY_VAR in msg and SECRET_VAR in msg and str(tmp_path) in msg


def test_only_secret_missing_is_named(tmp_path):
    with pytest.raises(MissingCredentials) as e:
        alpaca_credentials({KEY_VAR: "k"}, None)
    assert f"set {SECRET_VAR} in the environment" in str(e.value)


def test_repr_never_shows_the_secret():
    c = Credentials("PKABCDEFGHIJKLMNOPQR", "very-secret-value")
    for text in (repr(c), str(c), f"{c}", str([c])):
        assert "very-secret-value" not in text
        assert "PKABCDEFGHIJKLMNOPQR" not in text
        assert "20 chars" in text


def test_malformed_dotenv_line_names_file_and_line_not_value(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"{KEY_VAR}=ok\nthis line has the secret hunter2\n")
    with pytest.raises(ValueError) as e:
        read_dotenv(str(env_file))
    assert f"{env_file}:2" in str(e.value)
    assert "hunter2" not in str(e.value)
