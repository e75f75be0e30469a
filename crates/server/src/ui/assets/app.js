// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Forms that ask before they act.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  // A table wider than its card scrolls within it: a keyboard reaches it to scroll it too.
  Array.prototype.forEach.call(document.querySelectorAll(".scroll"), function (box) {
    if (box.scrollWidth > box.clientWidth + 1) {
      box.setAttribute("tabindex", "0");
      box.setAttribute("role", "region");
      var table = box.querySelector("table");
      box.setAttribute("aria-label", (table && (table.caption ? table.caption.textContent : table.id)) || "Table");
    }
  });

  // The segment editor checks the condition as it is typed and shows how many it selects.
  var editor = document.querySelector("textarea[data-preview]");
  if (!editor) return;
  var out = document.getElementById("seg-check");
  var kind = document.getElementById("seg-kind");
  var timer = null, asked = 0;
  function check() {
    var condition = editor.value;
    if (!condition.trim()) { out.textContent = ""; out.className = "check"; return; }
    var mine = ++asked;
    fetch(editor.getAttribute("data-preview"), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      credentials: "same-origin",
      body: JSON.stringify({ condition: condition, kind: kind ? kind.value : "accounts" })
    }).then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (mine !== asked) return;
        if (res.ok) {
          var b = res.body;
          var text = "Valid: " + b.size + " of " + b.of + " would be members";
          if (b.sample && b.sample.length) text += " (" + b.sample.join(", ") + (b.size > b.sample.length ? ", …" : "") + ")";
          if (b.warnings && b.warnings.length) text += ". Note: " + b.warnings.map(function (w) { return w.message || w; }).join("; ");
          out.textContent = text;
          out.className = "check ok";
          editor.setAttribute("aria-invalid", "false");
        } else {
          out.textContent = (res.body && res.body.error && res.body.error.message) || "Not valid";
          out.className = "check bad";
          editor.setAttribute("aria-invalid", "true");
        }
      }).catch(function () { if (mine === asked) { out.textContent = "Could not check the condition."; out.className = "check bad"; } });
  }
  function later() { clearTimeout(timer); timer = setTimeout(check, 300); }
  editor.addEventListener("input", later);
  if (kind) kind.addEventListener("change", later);
  if (editor.value.trim()) check();
})();
