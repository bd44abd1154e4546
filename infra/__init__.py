"""Deployment artefacts for rolebroker: IAM documents and CloudFormation templates.

``python -m infra.generate`` derives them from the access policy and the
stage's ``.chalice/config.json``; ``resources.json`` is merged into the
template ``chalice package`` writes. See docs/deploy.md.
"""
