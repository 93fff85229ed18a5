"""A notice's text as it will be read, with every personal number found where it stands (broadcast.review)."""

from __future__ import annotations

from broadcast.review import mask_numbers, number_key, review_text

TEXT = "李某某，三组，身份证号150125195803121235。请拨打村监委会主任电话13912345678反映。"


def test_each_number_is_found_in_the_text_and_where_the_voice_reads_it() -> None:
    review = review_text("低保公示", TEXT)
    resident, phone = review.findings
    assert (resident.kind, resident.part, TEXT[resident.start : resident.end]) == (
        "resident_id",
        "body",
        "150125195803121235",
    )
    assert review.spoken is not None
    assert review.spoken[resident.spoken_start : resident.spoken_end] == "幺五零幺二五幺九五八零三幺二幺二三五"
    assert review.spoken[phone.spoken_start : phone.spoken_end] == "幺三九幺二三四五六七八"
    # The spoken form is exactly what the voice reads: the whole text, numbers and all, until they are masked.
    assert review.spoken.startswith("低保公示。李某某，三组，身份证号幺五零")
    assert [f.tone for f in review.findings] == ["blocking", "undecided"]
    assert not review.ready and "身份证号 150125********1235" in (review.refusal() or "")


def test_a_kept_phone_is_read_digit_by_digit_and_a_masked_one_is_shown_as_masked() -> None:
    masked = mask_numbers(TEXT)
    assert "身份证号150125********1235" in masked and "13912345678" in masked
    review = review_text("低保公示", masked, decisions={"13912345678": {"decision": "keep"}})
    assert [(f.kind, f.tone) for f in review.findings] == [("masked", "masked"), ("mobile_phone", "kept")]
    assert review.ready and review.refusal() is None
    spoken = review.spoken or ""
    hidden, kept = review.findings
    assert spoken[hidden.spoken_start : hidden.spoken_end] == "已隐去"
    assert spoken[kept.spoken_start : kept.spoken_end] == "幺三九幺二三四五六七八"
    only_phone = mask_numbers(TEXT, blocking=False, keys=["13912345678"])
    assert "139****5678" in only_phone and "150125195803121235" in only_phone


def test_a_phone_waits_for_its_authors_decision_and_its_key_is_its_eleven_digits() -> None:
    assert number_key("+86 139-1234-5678") == "13912345678"
    review = review_text("", "代办电话13800001111。")
    assert [finding.key for finding in review.undecided] == ["13800001111"]
    assert "请先决定保留" in (review.refusal() or "")
    assert review_text("", "报警电话12119，监督电话0471-1234567。").ready
