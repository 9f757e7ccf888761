"""The index: a ledger (`ledger.py`) and one vector backend per module (`sqlite.py`,
`pinecone.py`) behind `base.VectorBackend`; `factory.py` opens the ones the settings name.
Nothing is imported here, so a reader of the ledger alone (`up`) loads no backend or numpy."""
