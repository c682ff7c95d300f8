// One slide at a time: arrows / space / PageUp-Down / Home / End or a click step through the deck,
// and the URL hash names the slide (#3 is the third), so a link or a reload lands on the same one.
(() => {
  const slides = Array.from(document.querySelectorAll("section.slide"));
  if (!slides.length) return;
  document.documentElement.classList.add("js");
  let current = 0;
  const fromHash = () => {
    const n = parseInt(location.hash.slice(1), 10);
    return Number.isFinite(n) ? Math.min(Math.max(n, 1), slides.length) - 1 : 0;
  };
  const show = (i) => {
    current = Math.min(Math.max(i, 0), slides.length - 1);
    slides.forEach((s, k) => s.classList.toggle("active", k === current));
    document.body.dataset.current = String(current + 1);
    const hash = `#${current + 1}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  };
  const fit = () => {
    const scale = Math.min(window.innerWidth / 1280, window.innerHeight / 720);
    document.documentElement.style.setProperty("--scale", String(scale));
  };
  const step = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1, Enter: 1, ArrowLeft: -1, ArrowUp: -1, PageUp: -1, Backspace: -1 };
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key in step) show(current + step[e.key]);
    else if (e.key === "Home") show(0);
    else if (e.key === "End") show(slides.length - 1);
    else return;
    e.preventDefault();
  });
  document.addEventListener("click", (e) => {
    if (!e.target.closest("a")) show(current + (e.clientX > window.innerWidth / 3 ? 1 : -1));
  });
  window.addEventListener("hashchange", () => show(fromHash()));
  window.addEventListener("resize", fit);
  fit();
  show(fromHash());
})();
