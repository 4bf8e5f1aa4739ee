"""The QA dashboard: Streamlit pages over the inspection database, reading SQL only (never torch).

Start it with ``steel dashboard [--db URL] [--port N] [--config FILE]`` (``dashboard.cli``). Layout:

* ``app.py`` the entry script (login, shared sidebar filters, ``st.navigation``); ``views/`` one module
  per page;
* ``queries/`` every SQL statement, one module per topic (aggregation in the database, SQLite and
  PostgreSQL);
* ``filters.py`` the shared filters, ``data.py`` cached engine and results, ``spc.py`` control charts,
  ``export.py`` reviewed detections to VoTT (``vott_download.py`` the Review page's download),
  ``images.py``, ``ui.py`` small drawing helpers, ``colors.py`` one colour per class,
  ``localtime.py`` the plant's time zone;
* ``reports.py`` + ``templates/`` printable coil and shift reports, ``report_data.py`` their figures,
  ``svgmap.py`` the reports' coil map;
* ``config.py`` ``configs/dashboard.yaml``, ``auth.py`` password hashes and the login form.
"""
