// Filters hide rows without a reload; a click on a customer loads their detail fragment.
(function () {
  const filters = Array.from(document.querySelectorAll(".filters select"));
  const counts = {"at-risk": document.getElementById("shown"), "likely-lost": document.getElementById("lost-shown")};
  function apply() {
    const wanted = Object.fromEntries(filters.map((f) => [f.dataset.key, f.value]));
    for (const list of document.querySelectorAll("tbody.customers")) {
      let shown = 0;
      for (const row of list.querySelectorAll("tr.customer")) {
        const ok = Object.entries(wanted).every(([k, v]) => !v || row.dataset[k] === v);
        row.hidden = !ok;
        if (ok) shown += 1;
      }
      if (counts[list.id]) counts[list.id].textContent = shown;
    }
    const url = new URL(window.location);
    for (const [k, v] of Object.entries(wanted)) v ? url.searchParams.set(k, v) : url.searchParams.delete(k);
    history.replaceState(null, "", url);
  }
  for (const f of filters) f.addEventListener("change", apply);
  for (const list of document.querySelectorAll("tbody.customers")) {
    list.addEventListener("click", async (event) => {
      const row = event.target.closest("tr.customer");
      if (!row) return;
      const detail = document.getElementById("detail");
      const answer = await fetch("/dashboard/customer/" + encodeURIComponent(row.dataset.id),
                                 {credentials: "same-origin"});
      detail.innerHTML = answer.ok ? await answer.text() : "<p class='note'>Could not load " + row.dataset.id + "</p>";
    });
  }
  apply();
})();
