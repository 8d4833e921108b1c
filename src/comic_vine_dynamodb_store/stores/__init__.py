"""Store behaviour: per store a contract, a pure decision core, the DynamoDB shell, a twin."""
