<?xml version="1.0" encoding="UTF-8"?>
<!-- A shop order (urn:example:shop) as the body of the ERP's ReceiveOrder call. -->
<xsl:stylesheet version="1.0"
                xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:shop="urn:example:shop"
                xmlns:erp="urn:example:erp"
                exclude-result-prefixes="shop">
  <xsl:output method="xml" omit-xml-declaration="yes" encoding="UTF-8"/>

  <xsl:template match="/shop:order">
    <erp:ReceiveOrder>
      <erp:orderId><xsl:value-of select="@number"/></erp:orderId>
      <erp:amount><xsl:value-of select="format-number(sum(shop:line/@price), '0.00')"/></erp:amount>
    </erp:ReceiveOrder>
  </xsl:template>
</xsl:stylesheet>
