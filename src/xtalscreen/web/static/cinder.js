// Cinder: one-key scoring. 1-4 or c/p/l/o pick a class, s skips (see the hint on the page).
(function () {
  "use strict";
  var form = document.getElementById("score-form");
  if (!form) { return; }
  var sent = false;
  form.addEventListener("submit", function (e) {
    if (sent) { e.preventDefault(); }   // one submission per image (the server also ignores repeats)
    sent = true;
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) { return; }
    var t = e.target && e.target.tagName;
    if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT") { return; }
    var k = (e.key || "").toLowerCase();
    var targets = form.querySelectorAll("[data-keys]");
    for (var i = 0; i < targets.length; i++) {
      if (targets[i].getAttribute("data-keys").split(" ").indexOf(k) >= 0) {
        e.preventDefault();
        targets[i].click();
        return;
      }
    }
  });
})();
