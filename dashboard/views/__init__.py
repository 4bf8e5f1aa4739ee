"""The dashboard's pages, one module each: a Streamlit page script run through ``st.navigation`` by
``dashboard/app.py``, and an importable module with a ``render(ctx)`` function.

The folder is not called ``pages/``: beside the entry script, that name turns on Streamlit's legacy
multipage mode, which ``st.navigation`` replaces (and which confuses ``AppTest``).
"""
