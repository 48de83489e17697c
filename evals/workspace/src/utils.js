// Helpers for reading the inventory CSV.
import { readFileSync } from "node:fs";

export function loadItems(path) {
  const [header, ...rows] = readFileSync(path, "utf8").trim().split("\n");
  const names = header.split(",");
  return rows.map((row) => Object.fromEntries(row.split(",").map((value, i) => [names[i], value])));
}

export function totalValue(items) {
  // TODO: handle missing prices
  return items.reduce((sum, item) => sum + Number(item.quantity) * Number(item.unit_price), 0);
}
