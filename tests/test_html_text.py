"""HTML text nodes apart from markup: what the model is sent, and the document put back."""

from __future__ import annotations

from dragoman.html_text import parse_html

DOC = (
    '<!DOCTYPE html><div data-x="1 &amp; 2"><!-- keep --><p>Tom &amp; <em>Jerry</em></p>'
    "<script>var a = '<p>no</p>';</script><code>x &lt; y</code>  <p>  Bye\n now </p></div>"
)


def test_only_prose_text_nodes_are_sent_one_per_line() -> None:
    assert parse_html(DOC).text() == "Tom &\nJerry\nBye now"


def test_markup_entities_code_and_spacing_come_back_as_written() -> None:
    document = parse_html(DOC)
    assert document.render("Tom &\nJerry\nBye now") == DOC.replace("Bye\n now", "Bye now")
    translated = document.render("톰 &\n제리\n안녕 <끝>")
    assert translated == (
        '<!DOCTYPE html><div data-x="1 &amp; 2"><!-- keep --><p>톰 &amp; <em>제리</em></p>'
        "<script>var a = '<p>no</p>';</script><code>x &lt; y</code>  "
        "<p>  안녕 &lt;끝&gt; </p></div>"
    )


def test_a_translation_with_other_lines_goes_whole_into_the_first_node() -> None:
    document = parse_html("<p>One <b>two</b> three</p>")
    assert document.render("Un deux trois") == "<p>Un deux trois <b></b> </p>"
    assert parse_html("<br/><img src='a.png'>").text() == ""
