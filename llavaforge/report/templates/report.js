// Gallery filter: show the samples whose task and flags match, and the cards that still show one.
(function () {
  "use strict";
  var task = document.getElementById("filter-task");
  var flag = document.getElementById("filter-flag");
  var count = document.getElementById("gallery-count");
  if (!task || !flag || !count) {
    return;
  }
  var cards = Array.prototype.slice.call(document.querySelectorAll("#gallery-cards .card"));

  function matches(sample) {
    var flags = sample.getAttribute("data-flags").split(" ").filter(Boolean);
    if (task.value && sample.getAttribute("data-task") !== task.value) {
      return false;
    }
    if (flag.value === ":any") {
      return flags.length > 0;
    }
    if (flag.value === ":none") {
      return flags.length === 0;
    }
    return !flag.value || flags.indexOf(flag.value) >= 0;
  }

  function apply() {
    var cardsShown = 0;
    var samplesShown = 0;
    cards.forEach(function (card) {
      var visible = 0;
      card.querySelectorAll(".sample").forEach(function (sample) {
        var show = matches(sample);
        sample.hidden = !show;
        visible += show ? 1 : 0;
      });
      card.hidden = visible === 0;
      cardsShown += visible > 0 ? 1 : 0;
      samplesShown += visible;
    });
    count.setAttribute("data-cards", String(cardsShown));
    count.setAttribute("data-samples", String(samplesShown));
    count.textContent = cardsShown + " images, " + samplesShown + " samples match";
  }

  task.addEventListener("change", apply);
  flag.addEventListener("change", apply);
  apply();
})();
