"""The one pipeline every DynamoDB call goes through: timeout, retries, breaker, errors."""
