"""Pictures on the pages when evidence files are gone: crops deleted by a clean-up job, or never written
(``output.save_crops: false``) while the frame image was kept."""

from __future__ import annotations

from tests.dashboard.pagekit import run_page, sql


def _kept_frame(url: str, n_defects: int) -> int:
    """The id of L2's frame whose annotated image was kept, with ``n_defects`` defects moved onto it."""
    ((frame_id,),) = sql(
        url,
        "SELECT f.id FROM frames f JOIN lines l ON l.id = f.line_id "
        "WHERE l.name = 'L2' AND f.image_path IS NOT NULL",
    )
    moved = "SELECT id FROM defects WHERE frame_id != ? ORDER BY id LIMIT ?"
    sql(url, f"UPDATE defects SET frame_id = ? WHERE id IN ({moved})", (frame_id, frame_id, n_defects))
    return int(frame_id)


def test_gallery_cuts_crops_from_the_kept_frame_when_the_crop_files_are_gone(
    make_app, seeded_url: str
) -> None:
    frame_id = _kept_frame(seeded_url, 3)
    sql(seeded_url, "UPDATE defects SET crop_path = NULL")  # as a daemon with save_crops: false stores them
    sql(seeded_url, "UPDATE defects SET score = 0.999 WHERE frame_id = ?", (frame_id,))  # first by score
    n_kept = sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE frame_id = ?", (frame_id,))[0][0]
    assert 3 <= n_kept < 8
    at = make_app(seeded_url, page_size=8)
    run_page(at)
    run_page(at, "gallery")
    at.selectbox(key="gallery_sort").set_value("score_desc")
    run_page(at)
    assert len(at.get("image")) == n_kept  # the kept frame's defects, cut from it
    assert sum("(no image)" in c.value for c in at.caption) == 8 - n_kept  # the others say so


def test_review_cuts_each_defect_from_its_kept_frame_when_its_crop_was_deleted(
    make_app, seeded_url: str
) -> None:
    kept = "SELECT f.image_path FROM frames f JOIN lines l ON l.id = f.line_id WHERE l.name = 'L2' "
    kept += "AND f.image_path IS NOT NULL"
    sql(
        seeded_url,
        f"UPDATE frames SET image_path = ({kept}) WHERE line_id = (SELECT id FROM lines WHERE name = 'L1')",
    )
    sql(seeded_url, "UPDATE defects SET crop_path = '/deleted/by/cleanup.jpg'")  # every crop file is gone
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "review")
    at.radio(key="review_state").set_value("unreviewed")
    at.selectbox(key="review_sort").set_value("oldest")
    run_page(at)
    on_l1 = sum(" · L1 / " in m.value for m in at.markdown if m.value.startswith("**#"))
    on_l2 = sum(" · L2 / " in m.value for m in at.markdown if m.value.startswith("**#"))
    assert on_l1 and on_l2
    assert len(at.get("image")) == on_l1  # L1's frames were kept: each defect cut from its frame
    assert sum("no image on disk" in c.value for c in at.caption) == on_l2  # L2's were not
