"""Vector engines behind one port (`VectorBackend`): embedded (usearch + numpy), Qdrant, Pinecone."""
