"""One adapter per AWS service: STS, the DynamoDB store, secrets."""
