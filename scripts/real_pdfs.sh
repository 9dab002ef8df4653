#!/bin/sh
# A fixed set of real PDFs (papers, manuals, slides, reference cards, forms) taken from Debian's *-doc packages,
# for bench/ingest.py --real and bench/pdf_text.py. Not committed: the .deb files are downloaded with
# `apt-get download` (no install, no root needed beyond apt's cache) and unpacked into a cache folder.
#
#   scripts/real_pdfs.sh [DIR]      (default ~/.cache/rag-real-pdfs; the PDFs land in DIR/pdfs)
#
# Debian bookworm versions (2022-2023 documents). Each line: package, path inside it, name in DIR/pdfs (the kind
# first, so a folder listing shows the mix).
set -eu
DIR=${1:-$HOME/.cache/rag-real-pdfs}
mkdir -p "$DIR/debs" "$DIR/unpacked" "$DIR/pdfs"
LIST='
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/acmart/samples/sample-sigconf.pdf          paper2col-acm-sigconf.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/acmart/samples/sample-sigplan.pdf          paper2col-acm-sigplan.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/acmart/samples/sample-acmtog.pdf           paper2col-acm-tog.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/revtex4-1/sample/aps/apssamp.pdf           paper2col-aps-revtex.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/revtex4-1/sample/aip/aipsamp.pdf           paper2col-aip-revtex.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/acmart/samples/sample-acmsmall.pdf         paper-acm-small.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/apa7/samples/shortsample.pdf               paper-apa7.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/elsarticle/elsdoc.pdf                      manual-elsarticle.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/acmart/acmguide.pdf                        manual-acmart.pdf
r-doc-pdf               usr/share/doc/r-doc-pdf/manual/R-intro.pdf                                 manual-r-intro.pdf
r-doc-pdf               usr/share/doc/r-doc-pdf/manual/R-data.pdf                                  manual-r-data.pdf
gnuplot-doc             usr/share/doc/gnuplot/gnuplot.pdf                                          manual-gnuplot.pdf
asymptote-doc           usr/share/doc/asymptote/asymptote.pdf                                      manual-asymptote.pdf
pari-doc                usr/share/pari/doc/tutorial.pdf                                            manual-pari-tutorial.pdf
texlive-latex-recommended-doc usr/share/doc/texlive-doc/latex/beamer/beamerexample-conference-talk.pdf slides-beamer-talk.pdf
texlive-latex-recommended-doc usr/share/doc/texlive-doc/latex/beamer/beamerexample-lecture-beamer-version.pdf slides-beamer-lecture.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/beamer-verona/beamer-verona.pdf            slides-verona.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/bfh-ci/DEMO-BFHBeamer.pdf                  slides-bfh.pdf
texlive-publishers-doc  usr/share/doc/texlive-doc/latex/abntex2/examples/abntex2-modelo-slides.pdf slides-abntex2.pdf
octave-doc              usr/share/doc/octave/refcard-a4.pdf                                        card-octave.pdf
pari-doc                usr/share/pari/doc/refcard.pdf                                             card-pari.pdf
asymptote-doc           usr/share/doc/asymptote/asyRefCard.pdf                                     card-asymptote.pdf
texlive-latex-recommended-doc usr/share/doc/texlive-doc/latex/pdfmanagement-testphase/l3pdffield-textfield.pdf form-textfield.pdf
texlive-latex-recommended-doc usr/share/doc/texlive-doc/latex/pdfmanagement-testphase/l3pdffield-action.pdf form-action.pdf
texlive-humanities-doc  usr/share/doc/texlive-doc/latex/eledmac/examples/1-criticalnotes.pdf      edition-criticalnotes.pdf
'
packages=$(echo "$LIST" | awk 'NF {print $1}' | sort -u)
cd "$DIR/debs"
for package in $packages; do
    ls "$package"_*.deb >/dev/null 2>&1 || apt-get download "$package"
    [ -e "../unpacked/$package" ] || { mkdir -p "../unpacked/$package" && dpkg-deb -x "$package"_*.deb "../unpacked/$package"; }
done
echo "$LIST" | while read -r package path name; do
    [ -n "$package" ] || continue
    cp "$DIR/unpacked/$package/$path" "$DIR/pdfs/$name"
done
echo "$(ls "$DIR/pdfs" | wc -l) PDFs in $DIR/pdfs"
