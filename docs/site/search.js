// Offline search over search_index.js (window.SEARCH_INDEX: one entry per page section), built with the site.
(function () {
  const input = document.getElementById("search"), box = document.getElementById("search-results");
  const index = window.SEARCH_INDEX || [], root = window.SITE_ROOT || "";
  const esc = s => s.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  function score(entry, words) {
    const head = (entry.page + " " + entry.section).toLowerCase(), body = entry.text.toLowerCase();
    let s = 0;
    for (const w of words) { if (head.includes(w)) s += 10; else if (body.includes(w)) s += 1; else return 0; }
    return s;
  }
  function snippet(text, word) {
    const at = Math.max(0, text.toLowerCase().indexOf(word) - 60);
    return (at ? "…" : "") + text.slice(at, at + 160) + "…";
  }
  function show() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) { box.hidden = true; return; }
    const hits = index.map(e => [score(e, words), e]).filter(h => h[0] > 0).sort((a, b) => b[0] - a[0]).slice(0, 15);
    box.innerHTML = hits.map(([, e]) =>
      `<a href="${root}${e.url}${e.anchor ? "#" + e.anchor : ""}"><b>${esc(e.page)}</b>` +
      `${e.section ? " › " + esc(e.section) : ""}<br><small>${esc(snippet(e.text, words[0]))}</small></a>`
    ).join("") || "<p>No match.</p>";
    box.hidden = false;
  }
  input.addEventListener("input", show);
  input.addEventListener("keydown", e => {
    const first = box.querySelector("a");
    if (e.key === "Enter" && first) window.location.href = first.href;
  });
  document.addEventListener("keydown", e => {
    if (e.key === "/" && document.activeElement !== input) { e.preventDefault(); input.focus(); }
    if (e.key === "Escape") box.hidden = true;
  });
  const asked = new URLSearchParams(window.location.search).get("q");  // search.html?q=... or any page?q=...
  if (asked) { input.value = asked; show(); }
  document.addEventListener("click", e => { if (!box.contains(e.target) && e.target !== input) box.hidden = true; });
})();
