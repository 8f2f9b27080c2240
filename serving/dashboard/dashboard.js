// Filters hide rows without a reload; a click on a customer loads their detail fragment.
(function () {
  const list = document.getElementById("at-risk");
  const count = document.getElementById("shown");
  function apply() {
    const stage = document.getElementById("segment").value;
    const tier = document.getElementById("tier").value;
    let shown = 0;
    for (const row of list.querySelectorAll("tr.customer")) {
      const ok = (!stage || row.dataset.stage === stage) && (!tier || row.dataset.tier === tier);
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    count.textContent = shown;
    const url = new URL(window.location);
    stage ? url.searchParams.set("segment", stage) : url.searchParams.delete("segment");
    tier ? url.searchParams.set("tier", tier) : url.searchParams.delete("tier");
    history.replaceState(null, "", url);
  }
  document.getElementById("segment").addEventListener("change", apply);
  document.getElementById("tier").addEventListener("change", apply);
  list.addEventListener("click", async (event) => {
    const row = event.target.closest("tr.customer");
    if (!row) return;
    const detail = document.getElementById("detail");
    const answer = await fetch("/dashboard/customer/" + encodeURIComponent(row.dataset.id),
                               {credentials: "same-origin"});
    detail.innerHTML = answer.ok ? await answer.text() : "<p class='note'>Could not load " + row.dataset.id + "</p>";
  });
  apply();
})();
