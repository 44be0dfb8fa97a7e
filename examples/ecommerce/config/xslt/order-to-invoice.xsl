<?xml version="1.0" encoding="UTF-8"?>
<!-- A Shopify order (json-to-xml, root "order") → the ERP's SubmitInvoice body.
     The ERP wants one invoice per order; its number is the shop's order name without "#". -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:erp="urn:example:erp:invoices" exclude-result-prefixes="erp">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:template match="/order">
    <erp:SubmitInvoice>
      <erp:InvoiceNumber>INV-<xsl:value-of select="translate(name, '#', '')"/></erp:InvoiceNumber>
      <erp:OrderNumber><xsl:value-of select="name"/></erp:OrderNumber>
      <erp:Customer><xsl:value-of select="billing_address/name"/></erp:Customer>
      <erp:Country><xsl:value-of select="billing_address/country_code"/></erp:Country>
      <erp:Currency><xsl:value-of select="currency"/></erp:Currency>
      <erp:Total><xsl:value-of select="total_price"/></erp:Total>
      <erp:Lines>
        <xsl:for-each select="line_items">
          <erp:InvoiceLine>
            <erp:Sku><xsl:value-of select="sku"/></erp:Sku>
            <erp:Quantity><xsl:value-of select="quantity"/></erp:Quantity>
            <erp:UnitPrice><xsl:value-of select="price"/></erp:UnitPrice>
          </erp:InvoiceLine>
        </xsl:for-each>
      </erp:Lines>
    </erp:SubmitInvoice>
  </xsl:template>
</xsl:stylesheet>
