import{a}from"./chunk-OIXWGNE3.js";import"./chunk-ERZ2TMYJ.js";import"./chunk-UICGVJDT.js";import"./chunk-CT2UX4KZ.js";export{a as rememberDevice};
