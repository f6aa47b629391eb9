def test_notes_roundtrip_on_each_stack(app_factory, new_client, run_consumers):
    app = app_factory(["tests.plugins.notes.plugin"])
    c = new_client(app)
    r = c.post("/api/notes", json={"title": "a"}, idem="k")
    assert r.status_code == 201
    assert run_consumers(app) >= 1
    import sqlalchemy as sa
    from tests.plugins.notes.plugin import note_stats
    with app.extensions["tradeloop"].db.transaction() as conn:
        assert conn.execute(sa.select(note_stats.c.created).where(note_stats.c.user_id == c.user.id)).scalar() == 1
