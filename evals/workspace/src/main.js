// Inventory tracker: prints how many items are in stock and what they are worth.
import { loadItems, totalValue } from "./utils.js";

function main() {
  const items = loadItems("data/inventory.csv");
  console.log(`${items.length} items, worth ${totalValue(items).toFixed(2)} EUR`);
}

main();
