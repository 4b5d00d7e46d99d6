#!/usr/bin/python3
"""Run a program as the service would: its user, its environment file.

    run_as_service.py ENV_FILE USER WORKDIR PROGRAM [ARGS...]

Run by roles/app as root (ansible.builtin.script) to check that a new
release imports before it goes live, and for the seed command. It reads the
environment file the role writes (NAME="json-quoted value" lines, as systemd
reads it), so secrets travel from file to process, never on a command line.
"""

import json
import os
import pwd
import sys


def main() -> None:
    env_file, user, workdir, *command = sys.argv[1:]
    if not command:
        sys.exit(__doc__)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    with open(env_file, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, value = line.partition("=")
            env[name] = json.loads(value) if value.startswith('"') else value
    account = pwd.getpwnam(user)
    os.chdir(workdir)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    sys.stdout.flush()
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
