// Rule editor: checks the condition as you type (the no-JS "Check"
// button does the same on the server).
(function () {
  var script = document.currentScript;
  var csrf = script && script.getAttribute("data-csrf");
  var area = document.getElementById("when");
  var out = document.getElementById("compile");
  if (!area || !out || !window.fetch) return;
  var timer = null, seq = 0;
  function check() {
    var mine = ++seq;
    fetch("/dashboard/compile", {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({when: area.value})
    }).then(function (r) { return r.json(); }).then(function (res) {
      if (mine !== seq) return;
      if (res.ok) {
        out.className = "ok";
        out.textContent = "compiles" + (res.reads && res.reads.length ? "; reads " + res.reads.join(", ") : "");
        area.removeAttribute("aria-invalid");
      } else {
        out.className = "error";
        out.textContent = (res.line ? "line " + res.line + ", column " + res.column + ": " : "") + res.error;
        area.setAttribute("aria-invalid", "true");
      }
    }).catch(function () {});
  }
  area.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 200);
  });
})();
