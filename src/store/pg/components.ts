/**
 * Every part that keeps tables in PostgreSQL (a `Component` of pg.ts), in
 * the order a node migrates them at start; `serve --check` reports each
 * one's pending steps. A part adds its component here when it lands.
 */
import { ACCOUNTS } from "./accounts.ts";
import { LOG_COMPONENT } from "./log.ts";
import type { Component } from "./pg.ts";

export const CLUSTER_COMPONENTS: readonly Component[] = [ACCOUNTS, LOG_COMPONENT];
