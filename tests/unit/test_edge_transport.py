"""SSH target parsing and option checks (the connection itself is tested against a real sshd)."""

import pytest

from deploykit.edge.transport import SSHTarget, SSHTransport, parse_ssh_target
from deploykit.errors import UsageError


@pytest.mark.parametrize("text,expected", [
    ("ssh://pi@raspberrypi", SSHTarget("pi", "raspberrypi", 22)),
    ("ssh://pi@192.168.1.20:2222", SSHTarget("pi", "192.168.1.20", 2222)),
    ("ssh://device.local", SSHTarget(None, "device.local", 22)),
    ("ssh://mendel@[::1]:22022", SSHTarget("mendel", "::1", 22022)),
])
def test_parse(text, expected):
    assert parse_ssh_target(text) == expected


@pytest.mark.parametrize("text", ["pi@raspberrypi", "http://pi@host", "ssh://", "ssh://pi@host:notaport",
                                  "ssh://pi:secret@host", "ssh://pi@host/tmp"])
def test_parse_rejects(text):
    with pytest.raises(UsageError, match="--target"):
        parse_ssh_target(text)


def test_known_hosts_names_follow_openssh():
    assert SSHTarget("pi", "raspberrypi", 22).known_hosts_name == "raspberrypi"
    assert SSHTarget("pi", "127.0.0.1", 2222).known_hosts_name == "[127.0.0.1]:2222"
    assert SSHTarget("pi", "10.0.0.2", 2222).where == "pi@10.0.0.2:2222"


def test_python_and_identity_are_checked(tmp_path):
    target = SSHTarget("pi", "host", 22)
    with pytest.raises(UsageError, match="--python"):
        SSHTransport(target, python="python3; rm -rf ~")
    with pytest.raises(UsageError, match="--identity"):
        SSHTransport(target, identity=tmp_path / "missing_key")
    assert SSHTransport(target, python="~/venv/bin/python3.11").python == "~/venv/bin/python3.11"
