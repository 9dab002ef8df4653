"""Write data/sample/lighthouse-handbook.pdf: a three-page demo PDF with text we wrote ourselves (CC0).

    .venv/bin/python scripts/make_sample_pdf.py

The PDF is committed; this script shows how it was made (fpdf2, a test dependency) and can make it again.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

PAGES = [
    (
        "Cape Merrow Lighthouse - Visitor Handbook",
        "This handbook was written for the demo corpus of this project and may be redistributed freely (CC0). "
        "The places and people in it are invented.\n\n"
        "History. The Cape Merrow lighthouse was first lit on 1 October 1891. Its tower is 38 metres tall and "
        "has 212 steps. The first keeper was Agnes Holloway, who kept the light for 27 years. The lamp was "
        "electrified in 1952 and the light has been automatic since 1986.",
    ),
    (
        "Visiting the lighthouse",
        "Opening hours. From April to October the lighthouse is open every day from 10:00 to 17:00. From "
        "November to March it is open on weekends only, from 11:00 to 15:00. The last climb starts 30 minutes "
        "before closing.\n\n"
        "Tickets. An adult ticket costs 6 euros and a child ticket (ages 5 to 15) costs 3 euros. Children under "
        "5 climb for free. A family ticket for two adults and up to three children costs 15 euros.",
    ),
    (
        "Safety and accessibility",
        "Safety. Children under 12 must climb with an adult. The gallery at the top closes when the wind is "
        "stronger than 60 kilometres per hour.\n\n"
        "Accessibility. The tower has no lift. The keeper's cottage at its foot is step-free and shows a film of "
        "the view from the lantern room every half hour.",
    ),
]


def main() -> None:
    pdf = FPDF()
    pdf.set_title("Cape Merrow Lighthouse - Visitor Handbook")
    for title, body in PAGES:
        pdf.add_page()
        pdf.set_font("helvetica", "B", 16)
        pdf.multi_cell(0, 10, title)
        pdf.ln(4)
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 7, body)
    out = Path(__file__).resolve().parent.parent / "data" / "sample" / "lighthouse-handbook.pdf"
    pdf.output(str(out))
    print(out)


if __name__ == "__main__":
    main()
