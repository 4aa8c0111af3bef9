"""Root cause and fixes for signals (Langfuse trace fetch, LLM analysis, apply-fix, fix-status).

Filled by the explain issue; nothing here yet.
"""
