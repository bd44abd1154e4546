"""Who is calling: OIDC tokens, issuers and the one principal per person."""
