"""The embedded local stack: AWS emulation (moto server), a dev OIDC issuer
and ``chalice local``, all on 127.0.0.1. Not part of the deployed broker."""
