"""The transfer saga: `TransferWorkflow`, its activities and the worker that runs them."""
