#!/usr/bin/python3
# Writes a PSKC file with python-pskc (Debian's python3-pskc), an
# implementation of RFC 6030 that shinkin-otp did not write, with fresh
# random secrets and keys, for the import tests (tests/cli/t_pskc_writers.sh).
#
#   pskc_write.py MODE OUT.pskc SECRETS.env [KEY.hex | PASSPHRASE]
#
# MODE: plain, psk (AES-128-CBC under a fresh pre-shared key written to
# KEY.hex, with python-pskc's HMAC-SHA1 MAC), pbkdf2 (a key derived from
# PASSPHRASE), dup (plain, two keys with one serial). The tokens are
# PW-<MODE>-TOTP (SHA1, 6 digits, 30 s), PW-<MODE>-HOTP (SHA1, 6 digits,
# counter 7) and PW-<MODE>-SHA256 (TOTP, HMAC-SHA256, 8 digits, 30 s);
# SECRETS.env gets one NAME=HEX line per token for oathtool.
import os
import sys

import pskc

ALG = "urn:ietf:params:xml:ns:keyprov:pskc:"


def main():
    mode, out, env = sys.argv[1:4]
    tag = mode.upper()
    doc = pskc.PSKC()
    secrets = {}

    def add(name, **kw):
        secret = os.urandom(32 if name.endswith("SHA256") else 20)
        serial = "PW-%s-%s" % (tag, name)
        doc.add_key(id="k-" + serial, serial=serial, secret=secret, **kw)
        secrets[name] = secret.hex()

    add("TOTP", algorithm=ALG + "totp", time_interval=30, response_length=6)
    add("HOTP", algorithm=ALG + "hotp", counter=7, response_length=6)
    add("SHA256", algorithm=ALG + "totp", time_interval=30,
        response_length=8, algorithm_suite="HMAC-SHA256")
    if mode == "dup":
        doc.add_key(id="k-again", serial="PW-DUP-TOTP", secret=os.urandom(20),
                    algorithm=ALG + "totp", time_interval=30,
                    response_length=6)
    if mode == "psk":
        key = os.urandom(16)
        doc.encryption.setup_preshared_key(key=key)
        with open(sys.argv[4], "w") as f:
            f.write(key.hex() + "\n")
    elif mode == "pbkdf2":
        doc.encryption.setup_pbkdf2(sys.argv[4], iterations=1000)
    doc.write(out)
    with open(env, "w") as f:
        for name, hexval in secrets.items():
            f.write("%s_%s=%s\n" % (tag, name, hexval))


if __name__ == "__main__":
    main()
