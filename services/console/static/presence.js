// Tells the hub this agent's console is open, once a minute while a page of it is shown:
// web chat visitors see "offline" when no agent of their department is (services/presence.py).
"use strict";
(function () {
  const EVERY_MS = 60000;
  function beat() {
    if (document.visibilityState === "visible") {
      fetch("/console/presence.json", { credentials: "same-origin", cache: "no-store" }).catch(
        function () {}
      );
    }
  }
  beat();
  setInterval(beat, EVERY_MS);
  document.addEventListener("visibilitychange", beat);
})();
