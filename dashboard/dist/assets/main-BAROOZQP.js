import{a}from"./chunk-4OPM4YH6.js";import"./chunk-L425MHCD.js";import"./chunk-HIIKZZ7J.js";import"./chunk-FFUQXNCW.js";export{a as rememberDevice};
