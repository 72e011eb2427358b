// MathJax 3 configuration for pymdownx.arithmatex (generic mode). MathJax itself is
// served from the site (assets/mathjax/, copied from the installed package by the hook);
// it finds its extensions and fonts next to its own script, so nothing comes from a CDN.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    // Math in the pages, and in the table of contents (headings with math).
    processHtmlClass: "arithmatex|md-ellipsis",
  },
};

// MathJax typesets the page once at start-up. The theme's instant navigation (which would
// need a re-typeset on every page swap) is off in mkdocs.yml, so nothing else is needed.
