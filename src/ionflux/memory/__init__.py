"""Vector memory: namespaced agent memory on an embedded engine, Qdrant or Pinecone behind one interface.

Public: `interface` (types, `VectorMemory`), `templates.resolve_namespace_template`, and
`platform.services["memory"].for_workspace(workspace_id)`.
"""
